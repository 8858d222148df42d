//! Following etcd: connect, read the prefix, watch from the revision after the read, and
//! start again from the right place whatever etcd does meanwhile.
//!
//! Why a state machine of its own: each step (connect, read, start the watch, take one
//! message) can fail in its own way, and what to do next depends on where the last one
//! stopped; kept apart, each step is short and the source's API stays small.

use std::collections::VecDeque;

use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use tower::discover::Change;

use super::etcd::EtcdDiscovery;
use super::etcd_members::Entries;
use super::etcd_settings::EtcdError;
use crate::registry::{MemberId, MemberSpec};

/// The source's state between two steps.
pub(super) struct Follow {
    source: EtcdDiscovery,
    entries: Entries,
    client: Option<Client>,
    watch: Option<WatchStream>,
    /// The revision to watch from; `None` until the prefix has been read (or after a
    /// compaction made a new read necessary).
    next_revision: Option<i64>,
    failures: u32,
    pending: VecDeque<Result<Change<MemberId, MemberSpec>, EtcdError>>,
}

impl Follow {
    pub(super) fn new(source: EtcdDiscovery) -> Self {
        Self {
            entries: Entries::new(&source.settings.prefix, source.announced.clone())
                .reserving(source.settings.reserved.clone()),
            source,
            client: None,
            watch: None,
            next_revision: None,
            failures: 0,
            pending: VecDeque::new(),
        }
    }

    /// The next change or error to announce, if a step left one.
    pub(super) fn next_item(&mut self) -> Option<Result<Change<MemberId, MemberSpec>, EtcdError>> {
        self.pending.pop_front()
    }

    /// Connects, reads, starts the watch or takes one watch message, whichever is next.
    pub(super) async fn step(&mut self) {
        if self.client.is_none() {
            match self.source.connect().await {
                Ok(c) => self.client = Some(c),
                Err(e) => return self.lost(e).await,
            }
        }
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let Some(watch) = &mut self.watch else {
            let from = match self.next_revision {
                Some(r) => r,
                None => match self.source.list(client, &mut self.entries).await {
                    Ok((revision, errors)) => {
                        self.pending.extend(errors.into_iter().map(Err));
                        self.pending.extend(self.entries.changes());
                        self.next_revision = Some(revision + 1);
                        revision + 1
                    }
                    Err(e) => return self.lost(e).await,
                },
            };
            return self.start_watch(from).await;
        };
        match watch.message().await {
            Ok(Some(resp)) => {
                if resp.compact_revision() > 0 {
                    // asked to resume from a revision etcd no longer has: read it all again
                    self.watch = None;
                    self.next_revision = None;
                    self.pending.push_back(Err(EtcdError::Compacted {
                        prefix: self.source.settings.prefix.clone(),
                        compacted: resp.compact_revision(),
                    }));
                    return;
                }
                if resp.canceled() {
                    let reason = format!("the watch was cancelled: {}", resp.cancel_reason());
                    return self.lost(self.watch_error(reason)).await;
                }
                let mut errors = Vec::new();
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Put => {
                            if let Err(e) = self.entries.put(kv.key(), kv.value()) {
                                errors.push(e);
                            }
                        }
                        EventType::Delete => self.entries.delete(kv.key()),
                    }
                    self.next_revision = Some(kv.mod_revision() + 1);
                }
                self.pending.extend(errors.into_iter().map(Err));
                self.pending.extend(self.entries.changes());
            }
            Ok(None) => {
                let e = self.watch_error("etcd closed the watch".to_owned());
                self.lost(e).await;
            }
            Err(e) => {
                let e = self.watch_error(e.to_string());
                self.lost(e).await;
            }
        }
    }

    async fn start_watch(&mut self, from: i64) {
        let Some(client) = &mut self.client else {
            return;
        };
        let s = &self.source.settings;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let started = tokio::time::timeout(s.timeout, async {
            let mut watch = client.watch(s.prefix.as_str(), Some(options)).await?;
            // the first answer says whether the watch was made
            let first = watch.message().await?;
            Ok::<_, etcd_client::Error>((watch, first))
        })
        .await;
        match started {
            Ok(Ok((watch, Some(first)))) if first.created() && !first.canceled() => {
                if self.failures > 0 {
                    tracing::info!(prefix = %s.prefix, revision = from, "following etcd again");
                }
                self.watch = Some(watch);
                self.failures = 0;
            }
            Ok(Ok((_, Some(first)))) if first.compact_revision() > 0 => {
                self.next_revision = None;
                self.pending.push_back(Err(EtcdError::Compacted {
                    prefix: s.prefix.clone(),
                    compacted: first.compact_revision(),
                }));
            }
            Ok(Ok((_, first))) => {
                let reason = first.map_or_else(
                    || "etcd closed the watch".to_owned(),
                    |f| format!("the watch was not made: {}", f.cancel_reason()),
                );
                let e = self.watch_error(reason);
                self.lost(e).await;
            }
            Ok(Err(e)) => {
                let e = self.watch_error(e.to_string());
                self.lost(e).await;
            }
            Err(_) => {
                let e = self.watch_error(format!("no answer within {:?}", s.timeout));
                self.lost(e).await;
            }
        }
    }

    fn watch_error(&self, message: String) -> EtcdError {
        EtcdError::Watch {
            prefix: self.source.settings.prefix.clone(),
            message,
        }
    }

    /// etcd was lost: says so, forgets the connection and waits before the next try. The
    /// next connection reads the whole prefix again rather than resume the watch: the etcd
    /// that answers may have been restored from a backup or wiped and written anew, with a
    /// history that no longer continues ours (whether its revision is now behind ours or
    /// past it), and one read of the prefix costs little.
    async fn lost(&mut self, error: EtcdError) {
        self.pending.push_back(Err(error));
        self.watch = None;
        self.client = None;
        self.next_revision = None;
        let s = &self.source.settings;
        let doubled = s
            .retry_min
            .saturating_mul(1u32 << self.failures.min(16))
            .min(s.retry_max);
        self.failures = self.failures.saturating_add(1);
        // between half and all of the wait, so balancers that lost etcd together spread out
        let wait = doubled.mul_f64(0.5 + fastrand::f64() / 2.0);
        tokio::time::sleep(wait).await;
    }
}
