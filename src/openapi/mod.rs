//! API contracts: a site's OpenAPI documents enforced at the edge (a positive security model).
//!
//! The gateway behind the edge publishes every API it serves as an OpenAPI document. With the
//! document the edge can refuse what the API never accepts, before any signature runs: a path or
//! method the API does not have, a parameter of the wrong type or out of range, a body that does
//! not match its schema, a media type the operation does not take, a missing API key.
//!
//! * [`load`] reads the document and every file its `$ref`s name (never the network), and
//!   rewrites OpenAPI 3.0's schema dialect into JSON Schema 2020-12.
//! * [`compile`] turns it into a [`Contract`]: the operations with their path templates
//!   ([`router`]) and compiled JSON Schema validators (the `jsonschema` crate), once, at load.
//! * [`validate`] checks a request against it, head first (path, method, parameters,
//!   credentials), then the body; the result is a list of [`Violation`]s.
//! * [`problem`] writes the RFC 9457 `application/problem+json` answer.
//! * [`learn`] drafts a document from access logs, for APIs that have none yet; [`cli`] holds
//!   `portcullis openapi check` and `learn`; [`replay`] puts contracts in front of the WAF in
//!   `portcullis replay`.

pub mod cli;
pub mod compile;
pub mod learn;
pub mod load;
pub mod problem;
pub mod replay;
pub mod router;
pub mod validate;

use serde::Deserialize;
use std::path::PathBuf;

pub use compile::{Contract, Operation};
pub use load::DocError;
pub use validate::{Outcome, Violation};

/// One OpenAPI document a site enforces (`[[sites.openapi]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiConfig {
    /// The document (YAML or JSON, OpenAPI 3.0 or 3.1), relative to the configuration file.
    pub document: PathBuf,
    /// The path the API is served under at the edge (the gateway's API suffix, `/orders-api`).
    /// Default: the path of the document's first `servers` URL, else `/`.
    #[serde(default)]
    pub base_path: Option<String>,
    /// `prevention` (refuse violations), `detection` (log them), `off`. Independent of the WAF's.
    #[serde(default)]
    pub mode: ContractMode,
    /// What is done with what the document does not declare.
    #[serde(default)]
    pub undeclared: UndeclaredConfig,
    /// Status for a path the API does not have: 404 (default) or 403.
    #[serde(default = "default_not_found")]
    pub not_found_status: u16,
    /// List the first violations (JSON pointer, keyword, reason) in the problem answer. Off by
    /// default: a precise answer also teaches an attacker the schema.
    #[serde(default)]
    pub expose_violations: bool,
    /// Query values that passed the contract against a closed type (integer, number, boolean,
    /// UUID, date, enum) are not scanned by the WAF's argument rules. Default: on in prevention,
    /// off otherwise.
    #[serde(default)]
    pub waf_skips_typed_values: Option<bool>,
}

impl OpenApiConfig {
    /// Whether the WAF skips values the contract proved inert (`waf_skips_typed_values`).
    pub fn skips_typed_values(&self) -> bool {
        self.waf_skips_typed_values
            .unwrap_or(self.mode == ContractMode::Prevention)
    }
}

fn default_not_found() -> u16 {
    404
}

/// Enforcement mode of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContractMode {
    #[default]
    Prevention,
    Detection,
    Off,
}

/// `block` or `log` for each kind of undeclared input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undeclared {
    Block,
    Log,
}

/// What happens to each kind of input an operation does not declare.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndeclaredConfig {
    #[serde(default = "block")]
    pub paths: Undeclared,
    #[serde(default = "block")]
    pub methods: Undeclared,
    #[serde(default = "block")]
    pub query: Undeclared,
    /// Browsers and proxies add headers no API declares: logged by default.
    #[serde(default = "log")]
    pub headers: Undeclared,
    #[serde(default = "log")]
    pub cookies: Undeclared,
    /// Object fields a schema does not list and says nothing about (`additionalProperties`).
    #[serde(default = "block")]
    pub body_fields: Undeclared,
}

impl Default for UndeclaredConfig {
    fn default() -> Self {
        UndeclaredConfig {
            paths: block(),
            methods: block(),
            query: block(),
            headers: log(),
            cookies: log(),
            body_fields: block(),
        }
    }
}

fn block() -> Undeclared {
    Undeclared::Block
}
fn log() -> Undeclared {
    Undeclared::Log
}

#[cfg(test)]
mod tests;
