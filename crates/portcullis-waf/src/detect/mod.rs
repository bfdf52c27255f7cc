//! Tokenizer-based injection detectors used as rule operators.
//!
//! * [`detect_sqli`] lexes a value as SQL in several quoting contexts, folds
//!   the token stream and matches it against a hand-written grammar of
//!   injection shapes, returning the token fingerprint on a match.
//! * [`detect_xss`] runs an HTML-aware tokenizer (plus attribute and
//!   JavaScript-context checks) and reports dangerous markup.
//!
//! Both expect an already URL-decoded value, never panic, run in time linear
//! in the input and avoid allocation on the common benign path.
pub mod sqli;
pub mod xss;
pub use sqli::detect_sqli;
pub use xss::detect_xss;
