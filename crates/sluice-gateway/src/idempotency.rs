//! `Idempotency-Key`: a retried request (same API key, same Idempotency-Key) within the window
//! gets the first request's answer and produces nothing again. A retry that arrives while the
//! first is still running gets 409; the same key with a different body gets 422 (as Stripe's
//! API does). Answers that invite a retry (429, 5xx) are not remembered, so the retry runs.
//! Memory only: a restarted gateway, or another replica, does not know earlier keys.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Keys remembered at most; the oldest are forgotten first.
const MAX_KEYS: usize = 100_000;

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Bytes,
}

/// What to do with a request that carries an Idempotency-Key.
#[derive(Debug)]
pub enum Lookup {
    /// First time: run it, then [`Claim::finish`].
    New(Claim),
    /// Seen: answer this again.
    Replay(StoredAnswer),
    /// The first request is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

type Id = (String, String);

enum Entry {
    Running {
        fingerprint: [u8; 32],
    },
    Done {
        fingerprint: [u8; 32],
        answer: StoredAnswer,
        at: Instant,
    },
}

#[derive(Default)]
struct Table {
    entries: HashMap<Id, Entry>,
    order: VecDeque<(Instant, Id)>,
}

/// Remembered keys.
#[derive(Clone)]
pub struct Idempotency {
    window: Duration,
    table: Arc<Mutex<Table>>,
}

/// The right to run a request and record its answer; dropped unfinished, it frees the key.
#[derive(Debug)]
pub struct Claim {
    id: Option<Id>,
    fingerprint: [u8; 32],
    table: Arc<Mutex<Table>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} keys", self.entries.len())
    }
}

impl Idempotency {
    /// Keys are remembered for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            table: Arc::default(),
        }
    }

    /// Looks up (api key, Idempotency-Key) for a request to `stream` with `body`.
    pub fn lookup(
        &self,
        api_key: &str,
        key: &str,
        stream: &str,
        body: &[u8],
        now: Instant,
    ) -> Lookup {
        let mut hasher = Sha256::new();
        hasher.update(stream.as_bytes());
        hasher.update([0]);
        hasher.update(body);
        let fingerprint: [u8; 32] = hasher.finalize().into();
        let id = (api_key.to_string(), key.to_string());
        let mut table = self.table.lock().expect("idempotency table");
        self.expire(&mut table, now);
        match table.entries.get(&id) {
            Some(Entry::Running { fingerprint: f }) | Some(Entry::Done { fingerprint: f, .. })
                if *f != fingerprint =>
            {
                Lookup::Mismatch
            }
            Some(Entry::Running { .. }) => Lookup::InProgress,
            Some(Entry::Done { answer, .. }) => Lookup::Replay(answer.clone()),
            None => {
                table
                    .entries
                    .insert(id.clone(), Entry::Running { fingerprint });
                Lookup::New(Claim {
                    id: Some(id),
                    fingerprint,
                    table: self.table.clone(),
                })
            }
        }
    }

    fn expire(&self, table: &mut Table, now: Instant) {
        while let Some((at, _)) = table.order.front() {
            if now.saturating_duration_since(*at) < self.window && table.order.len() < MAX_KEYS {
                break;
            }
            let (at, id) = table.order.pop_front().expect("front exists");
            if matches!(table.entries.get(&id), Some(Entry::Done { at: done, .. }) if *done == at) {
                table.entries.remove(&id);
            }
        }
    }
}

impl Claim {
    /// Records the answer; one that invites a retry (429, 5xx) frees the key instead.
    pub fn finish(mut self, answer: &StoredAnswer, now: Instant) {
        let id = self.id.take().expect("finished once");
        let mut table = self.table.lock().expect("idempotency table");
        if answer.status == 429 || answer.status >= 500 {
            table.entries.remove(&id);
            return;
        }
        table.entries.insert(
            id.clone(),
            Entry::Done {
                fingerprint: self.fingerprint,
                answer: answer.clone(),
                at: now,
            },
        );
        table.order.push_back((now, id));
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.table
                .lock()
                .expect("idempotency table")
                .entries
                .remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> StoredAnswer {
        StoredAnswer {
            status,
            body: Bytes::from_static(b"{\"accepted\":1}"),
        }
    }

    #[test]
    fn a_retry_replays_a_running_one_conflicts_and_another_body_mismatches() {
        let cache = Idempotency::new(Duration::from_secs(60));
        let now = Instant::now();
        let Lookup::New(claim) = cache.lookup("shop", "k1", "s", b"body", now) else {
            panic!("first use")
        };
        assert!(matches!(
            cache.lookup("shop", "k1", "s", b"body", now),
            Lookup::InProgress
        ));
        claim.finish(&answer(200), now);
        match cache.lookup("shop", "k1", "s", b"body", now) {
            Lookup::Replay(stored) => assert_eq!(stored, answer(200)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cache.lookup("shop", "k1", "s", b"other", now),
            Lookup::Mismatch
        ));
        assert!(matches!(
            cache.lookup("shop", "k1", "t", b"body", now),
            Lookup::Mismatch
        ));
        // Another API key's Idempotency-Key of the same text is its own.
        assert!(matches!(
            cache.lookup("ops", "k1", "s", b"body", now),
            Lookup::New(_)
        ));
    }

    #[test]
    fn keys_expire_after_the_window_and_failures_are_not_remembered() {
        let cache = Idempotency::new(Duration::from_secs(60));
        let now = Instant::now();
        let Lookup::New(claim) = cache.lookup("shop", "k1", "s", b"body", now) else {
            panic!("first use")
        };
        claim.finish(&answer(202), now);
        let later = now + Duration::from_secs(61);
        assert!(matches!(
            cache.lookup("shop", "k1", "s", b"body", later),
            Lookup::New(_)
        ));

        let Lookup::New(claim) = cache.lookup("shop", "k2", "s", b"body", now) else {
            panic!("first use")
        };
        claim.finish(&answer(503), now);
        assert!(matches!(
            cache.lookup("shop", "k2", "s", b"body", now),
            Lookup::New(_)
        ));
        // A claim dropped without an answer (the client went away) frees the key.
        assert!(matches!(
            cache.lookup("shop", "k3", "s", b"body", now),
            Lookup::New(_)
        ));
        assert!(matches!(
            cache.lookup("shop", "k3", "s", b"body", now),
            Lookup::New(_)
        ));
    }
}
