//! `[balancer]` (one) or `[[balancer]]` (several): the file as read, before its balancers
//! are split into the first and the rest.
//!
//! Why a reader of its own: a file with one balancer keeps Apache's one-`<Proxy>` shape
//! (`[balancer]`, `[[balancer.member]]`), and one with several writes `[[balancer]]` tables
//! as Apache writes several `<Proxy balancer://…>` sections; both read into the same
//! [`FileConfig`], errors named at their lines either way.

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::file::{BalancerSection, FileConfig, ManagerSection, ServerSection};

/// The file as read, before its balancers are split into the first and the rest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    server: ServerSection,
    balancer: Balancers,
    #[serde(default)]
    manager: Option<ManagerSection>,
    #[serde(rename = "vhost", default)]
    vhosts: Vec<super::routes::VhostSection>,
}

/// `[balancer]` (one) or `[[balancer]]` (several).
struct Balancers {
    list: Vec<BalancerSection>,
    array: bool,
}

impl<'de> Deserialize<'de> for Balancers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> de::Visitor<'de> for OneOrMany {
            type Value = Balancers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [balancer] table or [[balancer]] tables")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Balancers, A::Error> {
                let one = BalancerSection::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Balancers {
                    list: vec![one],
                    array: false,
                })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Balancers, A::Error> {
                let list = Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Balancers { list, array: true })
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

impl TryFrom<RawFile> for FileConfig {
    type Error = &'static str;
    fn try_from(raw: RawFile) -> Result<Self, Self::Error> {
        let mut list = raw.balancer.list.into_iter();
        let balancer = list
            .next()
            .ok_or("`balancer` is empty: give at least one balancer")?;
        Ok(Self {
            server: raw.server,
            balancer,
            more_balancers: list.collect(),
            manager: raw.manager,
            vhosts: raw.vhosts,
            balancer_array: raw.balancer.array,
        })
    }
}
