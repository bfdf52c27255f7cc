//! Trace on demand: a request that carries `X-Portcullis-Trace: <secret>`
//! gets a response header listing each stage's decision and the matched
//! rules with their scores. Without the configured secret nothing is revealed.

use serde_json::{json, Value};

pub const HEADER: &str = "x-portcullis-trace";

/// Whether the request carries the configured secret (compared in constant time).
pub fn requested(secret: Option<&str>, sent: Option<&[u8]>) -> bool {
    match (secret, sent) {
        (Some(secret), Some(sent)) if secret.len() == sent.len() => {
            secret
                .bytes()
                .zip(sent)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        }
        _ => false,
    }
}

/// Collects stage decisions for one request.
#[derive(Debug, Default)]
pub struct Trace {
    stages: Vec<Value>,
}

impl Trace {
    pub fn stage(&mut self, name: &str, decision: Value) {
        self.stages
            .push(json!({"stage": name, "decision": decision}));
    }

    /// The header value: compact JSON (never contains CR or LF).
    pub fn render(&self) -> String {
        Value::Array(self.stages.clone()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_opens_the_trace() {
        assert!(requested(Some("s3cret"), Some(b"s3cret")));
        assert!(!requested(Some("s3cret"), Some(b"s3cres")));
        assert!(!requested(Some("s3cret"), Some(b"s3cret-longer")));
        assert!(!requested(None, Some(b"anything")));
        assert!(!requested(Some("s3cret"), None));
    }
}
