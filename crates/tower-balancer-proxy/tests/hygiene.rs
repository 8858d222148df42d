//! Properties of header hygiene over arbitrary client headers.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use proptest::prelude::*;
use tower_balancer_proxy::hygiene::{strip_hop_by_hop, Forwarding, TrustedProxies, HOP_BY_HOP};

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("connection".to_owned()),
        Just("x-forwarded-for".to_owned()),
        Just("x-forwarded-proto".to_owned()),
        Just("x-forwarded-host".to_owned()),
        Just("forwarded".to_owned()),
        Just("x-real-ip".to_owned()),
        Just("keep-alive".to_owned()),
        Just("te".to_owned()),
        Just("upgrade".to_owned()),
        Just("transfer-encoding".to_owned()),
        Just("authorization".to_owned()),
        "[a-z][a-z0-9-]{0,12}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("close, X-Forwarded-For, Authorization".to_owned()),
        Just("trailers".to_owned()),
        Just("1.2.3.4, 5.6.7.8".to_owned()),
        "[ -~]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn after_hygiene_there_is_one_x_forwarded_for_ending_in_the_client_and_no_hop_by_hop(
        headers in proptest::collection::vec((header_name(), header_value()), 0..16),
        client in any::<[u8; 4]>(),
        trusted in any::<bool>(),
        tls in any::<bool>(),
    ) {
        let mut h = HeaderMap::new();
        for (k, v) in &headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                h.append(k, v);
            }
        }
        let client = IpAddr::from(client);
        let fwd = if trusted {
            Forwarding::new().trusted(TrustedProxies::parse(["0.0.0.0/0"]).unwrap())
        } else {
            Forwarding::new()
        };
        strip_hop_by_hop(&mut h, false);
        fwd.apply(&mut h, client, tls, None);
        let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        prop_assert_eq!(xff.len(), 1);
        let xff = xff[0].to_str().unwrap().to_owned();
        prop_assert!(xff.ends_with(&client.to_string()), "{}", xff);
        if !trusted {
            prop_assert_eq!(xff, client.to_string());
            // nothing the untrusted client wrote about itself survives
            prop_assert!(h.get("forwarded").is_none());
            prop_assert!(h.get("x-real-ip").is_none());
            prop_assert!(h.get("x-forwarded-host").is_none(), "no valid Host was given");
        }
        for name in &HOP_BY_HOP {
            prop_assert!(h.get(name).is_none(), "{} survived", name);
        }
        prop_assert!(h.get("upgrade").is_none());
        for te in h.get_all("te") {
            prop_assert_eq!(te, "trailers");
        }
    }
}
