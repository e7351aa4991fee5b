//! Idempotency keys: the answer to a mutation is stored under the key that asked for it, so a
//! retry with the same key and the same body gets the same status and body again, a retry with
//! another body is a conflict, and a 4xx stays that 4xx for that key.
//!
//! Keys are scoped per merchant, operation and reference (empty for create). Answers are kept for
//! [`KEEP_FOR`] of simulator time.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use crate::sim::problem::Problem;
use crate::vipps::Operation;

/// How long a stored answer is kept.
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// An answer that can be sent again byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    /// `None` for an empty body.
    pub body: Option<Value>,
    pub content_type: &'static str,
}

impl Answer {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Answer {
            status,
            body: Some(body),
            content_type: "application/json",
        }
    }

    pub fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        match &self.body {
            Some(body) => res.content_type(self.content_type).body(body.to_string()),
            None => res.finish(),
        }
    }
}

impl From<Problem> for Answer {
    fn from(p: Problem) -> Self {
        Answer {
            status: p.status,
            body: Some(p.body),
            content_type: p.content_type,
        }
    }
}

/// What a request is, for comparing retries: its JSON (so whitespace does not matter) or, when it
/// is not JSON, its raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Fingerprint {
    Json(Option<Value>),
    Raw(Vec<u8>),
}

impl Fingerprint {
    pub fn of(parsed: Option<&Option<Value>>, raw: &[u8]) -> Self {
        match parsed {
            Some(v) => Fingerprint::Json(v.clone()),
            None => Fingerprint::Raw(raw.to_vec()),
        }
    }
}

/// Where a key applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub msn: String,
    pub operation: Operation,
    pub reference: String,
    pub key: String,
}

/// What the store knows about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The key is new: handle the request and store its answer.
    New,
    /// The same request was answered before: send this again.
    Replay(Answer),
    /// The key was used for another body.
    Conflict,
}

#[derive(Debug)]
struct Stored {
    fingerprint: Fingerprint,
    answer: Answer,
    at: Instant,
}

/// Stored answers by scope.
#[derive(Debug, Default)]
pub struct IdempotencyStore {
    entries: HashMap<Scope, Stored>,
}

impl IdempotencyStore {
    pub fn lookup(&self, scope: &Scope, fingerprint: &Fingerprint) -> Lookup {
        match self.entries.get(scope) {
            None => Lookup::New,
            Some(s) if &s.fingerprint == fingerprint => Lookup::Replay(s.answer.clone()),
            Some(_) => Lookup::Conflict,
        }
    }

    /// Stores a 2xx or 4xx answer; other answers are not final and are not stored.
    pub fn store(&mut self, scope: Scope, fingerprint: Fingerprint, answer: &Answer, now: Instant) {
        if answer.status.is_success() || answer.status.is_client_error() {
            self.entries.insert(
                scope,
                Stored {
                    fingerprint,
                    answer: answer.clone(),
                    at: now,
                },
            );
        }
    }

    /// Forgets answers older than [`KEEP_FOR`].
    pub fn prune(&mut self, now: Instant) {
        self.entries
            .retain(|_, s| now.saturating_duration_since(s.at) < KEEP_FOR);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(key: &str) -> Scope {
        Scope {
            msn: "123456".into(),
            operation: Operation::PaymentCapture,
            reference: "ref-12345678".into(),
            key: key.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn replays_same_body_and_refuses_another() {
        let mut s = IdempotencyStore::default();
        let t0 = Instant::now();
        let body = Fingerprint::Json(Some(json!({"a": 1})));
        assert_eq!(s.lookup(&scope("k"), &body), Lookup::New);
        let ok = Answer::json(StatusCode::OK, json!({"x": 1}));
        s.store(scope("k"), body.clone(), &ok, t0);
        assert_eq!(s.lookup(&scope("k"), &body), Lookup::Replay(ok));
        let other = Fingerprint::Json(Some(json!({"a": 2})));
        assert_eq!(s.lookup(&scope("k"), &other), Lookup::Conflict);
        assert_eq!(s.lookup(&scope("k2"), &other), Lookup::New);
        // Server errors are not final.
        let err = Answer::json(StatusCode::INTERNAL_SERVER_ERROR, json!({}));
        s.store(scope("k3"), body.clone(), &err, t0);
        assert_eq!(s.lookup(&scope("k3"), &body), Lookup::New);
        s.prune(t0 + KEEP_FOR);
        assert!(s.is_empty());
    }
}
