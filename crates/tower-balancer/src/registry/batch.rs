//! `Batch`: several registry changes under one lock with one rebuild.

use std::sync::Arc;

use super::error::RegistryError;
use super::handle::Writer;
use super::load::RegistryLoad;
use super::member::{check_weight, AdminState, Health, HealthSource, Member, MemberId};
use super::spec::MemberSpec;

/// Several changes applied under one lock, with one snapshot rebuild at the end.
/// Made by [`Registry::update`](super::Registry::update).
pub struct Batch<'a> {
    pub(super) writer: &'a mut Writer,
    pub(super) load: &'a Arc<RegistryLoad>,
    pub(super) changed: bool,
}

impl Batch<'_> {
    fn member(&self, id: &str) -> Result<&Arc<Member>, RegistryError> {
        self.writer
            .members
            .get(id)
            .ok_or_else(|| RegistryError::UnknownMember(escape(id)))
    }

    /// The member with this id as the batch stands, if any.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Arc<Member>> {
        self.writer.members.get(id)
    }

    /// See [`Registry::insert`](super::Registry::insert).
    ///
    /// # Errors
    /// As [`Registry::insert`](super::Registry::insert).
    pub fn insert(&mut self, spec: MemberSpec) -> Result<Arc<Member>, RegistryError> {
        if self.writer.members.contains_key(&spec.id) {
            return Err(RegistryError::DuplicateId(spec.id));
        }
        check_weight(&spec.id, spec.weight)?;
        let serial = self.writer.next_serial;
        self.writer.next_serial += 1;
        let member = Arc::new(Member::new(serial, spec, self.load.clone()));
        self.writer
            .members
            .insert(member.id().clone(), member.clone());
        self.changed = true;
        Ok(member)
    }

    /// See [`Registry::upsert`](super::Registry::upsert).
    ///
    /// # Errors
    /// As [`Registry::upsert`](super::Registry::upsert).
    pub fn upsert(&mut self, spec: MemberSpec) -> Result<Arc<Member>, RegistryError> {
        check_weight(&spec.id, spec.weight)?;
        match self.writer.members.get(&spec.id) {
            Some(existing)
                if existing.endpoint() == &spec.endpoint
                    && existing.tls_name() == spec.tls_name.as_deref() =>
            {
                let existing = existing.clone();
                existing.set_weight(spec.weight);
                existing.set_priority(spec.priority);
                existing.set_state(spec.state);
                existing.set_redirect(spec.redirect);
                existing.set_max_in_flight(spec.max);
                self.changed = true;
                Ok(existing)
            }
            Some(_) => {
                if let Some(old) = self.writer.members.remove(&spec.id) {
                    old.retire();
                }
                self.insert(spec)
            }
            None => self.insert(spec),
        }
    }

    /// See [`Registry::remove`](super::Registry::remove).
    ///
    /// # Errors
    /// As [`Registry::remove`](super::Registry::remove).
    pub fn remove(&mut self, id: &str) -> Result<Arc<Member>, RegistryError> {
        let removed = self
            .writer
            .members
            .remove(id)
            .ok_or_else(|| RegistryError::UnknownMember(escape(id)))?;
        removed.retire();
        self.changed = true;
        Ok(removed)
    }

    /// See [`Registry::set_weight`](super::Registry::set_weight).
    ///
    /// # Errors
    /// As [`Registry::set_weight`](super::Registry::set_weight).
    pub fn set_weight(&mut self, id: &str, weight: u32) -> Result<(), RegistryError> {
        let m = self.member(id)?;
        let weight = check_weight(m.id(), weight)?;
        if m.weight() != weight {
            m.set_weight(weight);
            self.changed = true;
        }
        Ok(())
    }

    /// See [`Registry::set_priority`](super::Registry::set_priority).
    ///
    /// # Errors
    /// As [`Registry::set_priority`](super::Registry::set_priority).
    pub fn set_priority(&mut self, id: &str, priority: u16) -> Result<(), RegistryError> {
        let m = self.member(id)?;
        if m.priority() != priority {
            m.set_priority(priority);
            self.changed = true;
        }
        Ok(())
    }

    /// See [`Registry::set_state`](super::Registry::set_state).
    ///
    /// # Errors
    /// As [`Registry::set_state`](super::Registry::set_state).
    pub fn set_state(&mut self, id: &str, state: AdminState) -> Result<(), RegistryError> {
        let m = self.member(id)?;
        if m.state() != state {
            m.set_state(state);
            self.changed = true;
        }
        Ok(())
    }

    /// Sets or clears a member's redirect route (Apache `redirect=`).
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`].
    pub fn set_redirect(&mut self, id: &str, route: Option<MemberId>) -> Result<(), RegistryError> {
        let m = self.member(id)?;
        if m.redirect() != route {
            m.set_redirect(route);
            self.changed = true;
        }
        Ok(())
    }

    /// See [`Registry::set_health`](super::Registry::set_health).
    ///
    /// # Errors
    /// As [`Registry::set_health`](super::Registry::set_health).
    pub fn set_health(&mut self, id: &str, health: Health) -> Result<(), RegistryError> {
        self.set_health_by(id, HealthSource::Operator, health)
    }

    /// See [`Registry::set_health_by`](super::Registry::set_health_by).
    ///
    /// # Errors
    /// As [`Registry::set_health_by`](super::Registry::set_health_by).
    pub fn set_health_by(
        &mut self,
        id: &str,
        source: HealthSource,
        health: Health,
    ) -> Result<(), RegistryError> {
        let m = self.member(id)?;
        if m.set_health_by(source, health) {
            self.changed = true;
        }
        Ok(())
    }

    /// Sets the panic threshold (see [`Registry::set_panic_threshold`](super::Registry::set_panic_threshold)).
    pub fn set_panic_threshold(&mut self, threshold: f64) {
        let t = if threshold.is_finite() {
            threshold.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if (self.writer.panic_threshold - t).abs() > f64::EPSILON {
            self.writer.panic_threshold = t;
            self.changed = true;
        }
    }

    /// Whether a member with this id is registered.
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.writer.members.contains_key(id)
    }
}

fn escape(id: &str) -> String {
    id.chars().take(64).flat_map(char::escape_default).collect()
}
