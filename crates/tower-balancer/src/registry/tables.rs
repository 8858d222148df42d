//! How strategy tables get built on every snapshot rebuild.

use std::any::Any;
use std::sync::{Arc, Weak};

use super::member::Member;
use super::snapshot::Table;

/// Builds one strategy's table for one tier; `None` once the strategy is gone.
pub(crate) trait TableBuilder: Send + Sync {
    fn build(&self, members: &[Arc<Member>]) -> Option<Table>;
}

/// Builds tables for a strategy held weakly, so a dropped strategy frees its slot.
pub(crate) struct WeakBuilder<S, F> {
    pub(crate) strategy: Weak<S>,
    pub(crate) build: F,
}

impl<S, F, T> TableBuilder for WeakBuilder<S, F>
where
    S: Send + Sync,
    F: Fn(&S, &[Arc<Member>]) -> T + Send + Sync,
    T: Any + Send + Sync,
{
    fn build(&self, members: &[Arc<Member>]) -> Option<Table> {
        let strategy = self.strategy.upgrade()?;
        Some(Box::new((self.build)(&strategy, members)))
    }
}
