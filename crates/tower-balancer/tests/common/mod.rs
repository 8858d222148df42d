//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use tower_balancer::registry::{Member, MemberId, MemberSpec, Registry};
use tower_balancer::strategy::{PickContext, Picker, Strategy, Tried};

pub fn spec(id: &str) -> MemberSpec {
    MemberSpec::new(
        MemberId::new(id).unwrap(),
        format!("http://{id}.test:80").parse().unwrap(),
    )
}

/// A registry with members `m0..m{n-1}`, weight 1.
pub fn registry(n: usize) -> Registry {
    let r = Registry::new();
    r.update(|b| {
        for i in 0..n {
            b.insert(spec(&format!("m{i}")))?;
        }
        Ok::<_, tower_balancer::registry::RegistryError>(())
    })
    .unwrap();
    r
}

pub fn pick_id<S: Strategy>(r: &Registry, p: &Picker<S>, key: Option<u64>) -> String {
    let tried = Tried::new();
    p.pick(&r.load(), &PickContext::new(key, &tried))
        .unwrap()
        .id()
        .to_string()
}

pub fn counts<S: Strategy>(r: &Registry, p: &Picker<S>, picks: usize) -> HashMap<String, usize> {
    let snap = r.load();
    let tried = Tried::new();
    let cx = PickContext::new(None, &tried);
    let mut out = HashMap::new();
    for _ in 0..picks {
        *out.entry(p.pick(&snap, &cx).unwrap().id().to_string())
            .or_insert(0) += 1;
    }
    out
}

/// Every candidate in the strategy's order until none is left.
pub fn candidates<S: Strategy>(r: &Registry, p: &Picker<S>, key: Option<u64>) -> Vec<Arc<Member>> {
    let snap = r.load();
    let mut tried = Tried::new();
    let mut out = Vec::new();
    while let Ok(m) = p.pick(&snap, &PickContext::new(key, &tried)) {
        assert!(tried.insert(m), "more members than MAX_TRIED");
        out.push(m.clone());
    }
    out
}
