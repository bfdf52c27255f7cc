//! Rate limiting per site, counted locally or shared between edges through
//! Redis.
//!
//! # Configuration
//!
//! ```toml
//! [[sites.rate_limits]]
//! name = "per-ip-api"            # unique within the site
//! key = ["client_ip"]            # parts: client_ip, client_country, path, "header:NAME"; [] = one bucket for the site
//! limit = 100                    # requests per window (>= 1)
//! window_seconds = 60            # 1 ..= 86400
//! action = "block"               # block (429 + Retry-After) | log; default block
//! when = [ { match = "uri_path", operator = "begins_with", values = ["/api/"] } ]  # optional, custom-rule condition syntax
//!
//! [rate_limit_store]             # top level, optional
//! kind = "memory"                # memory (default) | redis
//! url = "redis://127.0.0.1:6379/0"   # required for redis
//! on_error = "open"              # open: allow when the store fails | closed: refuse (store_error=true)
//! timeout_ms = 50                # bound on one store call (connect included), 1 ..= 5000
//! key_prefix = "portcullis:rl:"
//! ```
//!
//! # Semantics
//!
//! Sliding-window counter. Windows of `window_seconds` are aligned on the UNIX
//! epoch (all edges agree on window boundaries given NTP-synchronised
//! clocks). A request at time `t`, a fraction `f = elapsed / window` into the
//! current window, is counted in the current window, then
//!
//! ```text
//! estimate = current_count (including this request) + previous_count * (1 - f)
//! ```
//!
//! and it is allowed when `estimate <= limit` (computed exactly in integer
//! milliseconds). Every checked request is counted, refused ones too, so a
//! client that keeps sending above the limit stays limited until its rate
//! drops. `retry_after_secs` is the number of seconds (rounded up, >= 1)
//! until one more request would pass if the client sent nothing meanwhile.
//!
//! A rule applies when all `when` conditions hold and every key part is
//! present (a missing header or unknown country means the rule does not
//! count that request). Rules are checked in configuration order; the first
//! `block` rule that refuses stops the evaluation (later rules do not count
//! the request); `log` rules that exceed their limit are reported and
//! evaluation continues.
//!
//! Keys: `client_ip` (IPv4-mapped IPv6 as IPv4), `client_country`, `path`
//! (raw, without query), `header:NAME` (first value). Parts longer than 128
//! bytes are replaced by a 64-bit FNV-1a hash. In Redis a counter lives at
//! `{key_prefix}{SCOPE:RULE:WINDOW:PARTS}:WINDOW_INDEX` (hash-tagged, so the
//! two keys a check touches share a cluster slot) and expires after two
//! windows plus one second.
//!
//! On a store failure or timeout (`timeout_ms` bounds each check, connection
//! set-up included) the check reports `store_error = true` and is allowed
//! (`on_error = "open"`) or refused (`"closed"`); the store error counter is
//! incremented and a warning is logged at most every 10 s. A broken
//! connection is dropped and re-established lazily (at most every 250 ms).

mod memory;
mod redis_store;
mod window;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::customrules::{
    all_match, canonical_ip, compile_conditions, Condition, ConditionConfig, MatchContext,
    RequestFacts,
};

pub use memory::MemoryStore;
pub use redis_store::{RedisStore, StoreError};
pub use window::{decide, position, Verdict, WindowPos};

/// One `[[sites.rate_limits]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub name: String,
    #[serde(default)]
    pub key: Vec<String>,
    pub limit: u64,
    pub window_seconds: u64,
    #[serde(default)]
    pub action: RateLimitAction,
    #[serde(default)]
    pub when: Vec<ConditionConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitAction {
    /// Refuse with 429 and `Retry-After`.
    #[default]
    Block,
    /// Only record that the limit was exceeded.
    Log,
}

/// `[rate_limit_store]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitStoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_timeout_ms() -> u64 {
    50
}
fn default_key_prefix() -> String {
    "portcullis:rl:".to_string()
}

impl Default for RateLimitStoreConfig {
    fn default() -> Self {
        RateLimitStoreConfig {
            kind: StoreKind::Memory,
            url: None,
            on_error: OnError::Open,
            timeout_ms: default_timeout_ms(),
            key_prefix: default_key_prefix(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Allow requests when the store fails.
    #[default]
    Open,
    /// Refuse requests when the store fails.
    Closed,
}

/// One part of a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    ClientIp,
    ClientCountry,
    Path,
    /// Lowercased header name.
    Header(String),
}

impl KeyPart {
    pub fn parse(s: &str) -> Result<KeyPart, String> {
        match s {
            "client_ip" => Ok(KeyPart::ClientIp),
            "client_country" => Ok(KeyPart::ClientCountry),
            "path" => Ok(KeyPart::Path),
            _ => match s.strip_prefix("header:") {
                Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                    Ok(KeyPart::Header(name.to_ascii_lowercase()))
                }
                Some(name) => Err(format!("invalid header name `{name}`")),
                None => Err(format!(
                    "unknown key part `{s}` (expected client_ip, client_country, path or header:NAME)"
                )),
            },
        }
    }
}

/// A compiled rate-limit rule.
#[derive(Debug)]
pub struct RateLimitRule {
    pub name: String,
    pub limit: u64,
    pub window_seconds: u64,
    pub action: RateLimitAction,
    pub key: Vec<KeyPart>,
    when: Vec<Condition>,
}

impl RateLimitRule {
    /// True when the `when` conditions hold.
    pub fn applies(&self, ctx: &MatchContext<'_>) -> bool {
        all_match(&self.when, ctx)
    }
}

/// A site's compiled rules, in configuration order.
#[derive(Debug, Default)]
pub struct RateLimitRules {
    rules: Vec<RateLimitRule>,
}

impl RateLimitRules {
    pub fn rules(&self) -> &[RateLimitRule] {
        &self.rules
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Compile a site's rules; `key_prefix` (e.g. `sites[0].rate_limits`) names
/// the list in errors (`sites[0].rate_limits[1].limit: ...`).
pub fn compile(
    configs: &[RateLimitConfig],
    key_prefix: &str,
) -> Result<RateLimitRules, Vec<String>> {
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    let mut rules = Vec::new();
    for (i, cfg) in configs.iter().enumerate() {
        let path = format!("{key_prefix}[{i}]");
        if cfg.name.trim().is_empty() {
            errors.push(format!("{path}.name: must not be empty"));
        } else if !names.insert(cfg.name.as_str()) {
            errors.push(format!(
                "{path}.name: duplicate rate limit name `{}`",
                cfg.name
            ));
        }
        if cfg.limit == 0 {
            errors.push(format!("{path}.limit: must be at least 1"));
        }
        if !(1..=86_400).contains(&cfg.window_seconds) {
            errors.push(format!(
                "{path}.window_seconds: must be between 1 and 86400"
            ));
        }
        let mut key = Vec::new();
        let mut seen = HashSet::new();
        for (j, k) in cfg.key.iter().enumerate() {
            match KeyPart::parse(k) {
                Ok(p) => {
                    if !seen.insert(p.clone()) {
                        errors.push(format!("{path}.key[{j}]: `{k}` is listed twice"));
                    }
                    key.push(p)
                }
                Err(e) => errors.push(format!("{path}.key[{j}]: {e}")),
            }
        }
        let when = match compile_conditions(&cfg.when, &format!("{path}.when")) {
            Ok(w) => w,
            Err(mut e) => {
                errors.append(&mut e);
                Vec::new()
            }
        };
        rules.push(RateLimitRule {
            name: cfg.name.clone(),
            limit: cfg.limit,
            window_seconds: cfg.window_seconds,
            action: cfg.action,
            key,
            when,
        });
    }
    if errors.is_empty() {
        Ok(RateLimitRules { rules })
    } else {
        Err(errors)
    }
}

/// Source of wall-clock time (since the UNIX epoch); injectable for tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        ManualClock {
            ms: AtomicU64::new(now_ms),
        }
    }
    pub fn set_ms(&self, ms: u64) {
        self.ms.store(ms, Ordering::SeqCst);
    }
    pub fn advance_ms(&self, ms: u64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms())
    }
}

enum Backend {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
}

/// Counter store, shared (`Arc`) by every site's limiter and kept across
/// configuration reloads so counts survive them.
pub struct RateLimitStore {
    backend: Backend,
    on_error: OnError,
}

impl RateLimitStore {
    /// In-memory store.
    pub fn memory() -> Self {
        RateLimitStore {
            backend: Backend::Memory(MemoryStore::new()),
            on_error: OnError::Open,
        }
    }

    /// Validate `[rate_limit_store]` (errors read `key_prefix.field: msg`).
    pub fn validate(cfg: &RateLimitStoreConfig, key_prefix: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if !(1..=5000).contains(&cfg.timeout_ms) {
            errors.push(format!(
                "{key_prefix}.timeout_ms: must be between 1 and 5000"
            ));
        }
        match (cfg.kind, &cfg.url) {
            (StoreKind::Redis, None) => {
                errors.push(format!("{key_prefix}.url: required when kind = \"redis\""))
            }
            (StoreKind::Redis, Some(url)) => {
                if let Err(e) = redis::Client::open(url.as_str()) {
                    errors.push(format!("{key_prefix}.url: {e}"));
                }
            }
            (StoreKind::Memory, Some(_)) => {
                errors.push(format!("{key_prefix}.url: only used when kind = \"redis\""))
            }
            (StoreKind::Memory, None) => {}
        }
        errors
    }

    /// Build from configuration (no network I/O; Redis connects lazily).
    pub fn from_config(cfg: &RateLimitStoreConfig, key_prefix: &str) -> Result<Self, Vec<String>> {
        let errors = Self::validate(cfg, key_prefix);
        if !errors.is_empty() {
            return Err(errors);
        }
        let backend = match cfg.kind {
            StoreKind::Memory => Backend::Memory(MemoryStore::new()),
            StoreKind::Redis => Backend::Redis(Box::new(
                RedisStore::new(
                    cfg.url.as_deref().unwrap_or_default(),
                    Duration::from_millis(cfg.timeout_ms),
                    &cfg.key_prefix,
                )
                .map_err(|e| vec![format!("{key_prefix}.url: {e}")])?,
            )),
        };
        Ok(RateLimitStore {
            backend,
            on_error: cfg.on_error,
        })
    }

    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Store failures so far (always 0 for memory); export as a counter.
    pub fn errors(&self) -> u64 {
        match &self.backend {
            Backend::Memory(_) => 0,
            Backend::Redis(r) => r.errors(),
        }
    }

    /// Number of tracked keys (memory store only).
    pub fn memory_len(&self) -> Option<usize> {
        match &self.backend {
            Backend::Memory(m) => Some(m.len()),
            Backend::Redis(_) => None,
        }
    }

    async fn hit(
        &self,
        base_key: &str,
        pos: WindowPos,
        now_ms: u64,
    ) -> Result<(u64, u64), StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.hit(base_key, pos.index, pos.window_ms, now_ms)),
            Backend::Redis(r) => r.hit(base_key, pos.index, pos.window_ms).await,
        }
    }

    /// Tell every edge that `backend` of `pool` is down for `ttl`.
    pub async fn publish_ejection(
        &self,
        pool: &str,
        backend: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.publish_ejection(pool, backend, ttl);
                Ok(())
            }
            Backend::Redis(r) => r.publish_ejection(pool, backend, ttl).await,
        }
    }

    /// Whether some edge published an unexpired ejection; `false` when the
    /// store cannot be reached (local health checks still apply).
    pub async fn is_ejected(&self, pool: &str, backend: &str) -> bool {
        match &self.backend {
            Backend::Memory(m) => m.is_ejected(pool, backend),
            Backend::Redis(r) => r.is_ejected(pool, backend).await.unwrap_or(false),
        }
    }
}

/// Result of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// False when over the limit (or the store failed with on_error=closed).
    pub allowed: bool,
    /// Weighted estimate including this request (0 on store error).
    pub count: f64,
    pub limit: u64,
    /// Seconds for `Retry-After` when refused; 0 when allowed.
    pub retry_after_secs: u64,
    /// The store failed or timed out; `allowed` then follows `on_error`.
    pub store_error: bool,
}

/// A rule that is due to be checked for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCheck {
    pub rule: usize,
    pub key: String,
}

/// A rule that was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCheck<'a> {
    pub rule: &'a str,
    pub action: RateLimitAction,
    pub check: Check,
}

/// Outcome of all applicable rules for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitOutcome<'a> {
    /// The `block` rule that refused the request (429 + Retry-After, or 503
    /// if `check.store_error`).
    pub blocked: Option<RuleCheck<'a>>,
    /// `log` rules whose limit is exceeded, plus checks that hit a store error.
    pub logged: Vec<RuleCheck<'a>>,
}

/// One site's limiter: compiled rules + shared store + clock.
pub struct RateLimiter {
    scope: String,
    rules: RateLimitRules,
    store: Arc<RateLimitStore>,
    clock: Arc<dyn Clock>,
}

/// Longest key part kept verbatim; longer parts are hashed.
const MAX_PART_LEN: usize = 128;

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn push_part(out: &mut String, part: &str) {
    if part.len() > MAX_PART_LEN {
        out.push_str(&format!("#{:016x}", fnv1a64(part.as_bytes())));
        return;
    }
    for ch in part.chars() {
        match ch {
            '|' => out.push_str("%7C"),
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            c if c.is_control() => out.push_str(&format!("%{:02X}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
}

impl RateLimiter {
    /// `scope` separates sites sharing one store (use the site's name/id).
    pub fn new(scope: &str, rules: RateLimitRules, store: Arc<RateLimitStore>) -> Self {
        RateLimiter {
            scope: scope.to_string(),
            rules,
            store,
            clock: Arc::new(SystemClock),
        }
    }

    /// Replace the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn rules(&self) -> &[RateLimitRule] {
        self.rules.rules()
    }

    pub fn store(&self) -> &Arc<RateLimitStore> {
        &self.store
    }

    /// Store failures so far.
    pub fn store_errors(&self) -> u64 {
        self.store.errors()
    }

    /// The key `rule` counts this request under, or `None` when a key part
    /// is missing (the rule then does not count the request).
    pub fn key_for(&self, rule: usize, facts: &dyn RequestFacts) -> Option<String> {
        let rule = &self.rules.rules[rule];
        let mut out = String::new();
        for (i, part) in rule.key.iter().enumerate() {
            if i > 0 {
                out.push('|');
            }
            match part {
                KeyPart::ClientIp => {
                    push_part(&mut out, &canonical_ip(facts.client_ip()?).to_string())
                }
                KeyPart::ClientCountry => {
                    push_part(&mut out, &facts.country()?.trim().to_ascii_uppercase())
                }
                KeyPart::Path => push_part(&mut out, facts.path()),
                KeyPart::Header(name) => push_part(&mut out, facts.header(name)?),
            }
        }
        Some(out)
    }

    /// Synchronous part of an evaluation: which rules apply to this request
    /// and under which key. Call it before any `.await` (the request facts
    /// need not be `Send`), then pass the result to [`run`](Self::run).
    pub fn plan(&self, facts: &dyn RequestFacts) -> Vec<PendingCheck> {
        if self.rules.rules.is_empty() {
            return Vec::new();
        }
        let ctx = MatchContext::new(facts);
        self.plan_in(&ctx)
    }

    /// [`plan`](Self::plan) with a shared match context.
    pub fn plan_in(&self, ctx: &MatchContext<'_>) -> Vec<PendingCheck> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if !rule.applies(ctx) {
                continue;
            }
            if let Some(key) = self.key_for(i, ctx.facts()) {
                out.push(PendingCheck { rule: i, key });
            }
        }
        out
    }

    /// Check the planned rules in order (see the module docs).
    pub async fn run(&self, plan: Vec<PendingCheck>) -> RateLimitOutcome<'_> {
        let mut outcome = RateLimitOutcome::default();
        for p in plan {
            let check = self.check(p.rule, &p.key).await;
            let rule = &self.rules.rules[p.rule];
            let rc = RuleCheck {
                rule: rule.name.as_str(),
                action: rule.action,
                check,
            };
            if !check.allowed && rule.action == RateLimitAction::Block {
                outcome.blocked = Some(rc);
                break;
            }
            if !check.allowed || check.store_error {
                outcome.logged.push(rc);
            }
        }
        outcome
    }

    /// Count one request for `key` under `rule` at the clock's current time.
    pub async fn check(&self, rule: usize, key: &str) -> Check {
        let now = self.clock.now();
        self.check_at(rule, key, now).await
    }

    /// Count one request at an explicit time (since the UNIX epoch).
    pub async fn check_at(&self, rule: usize, key: &str, now: Duration) -> Check {
        let r = &self.rules.rules[rule];
        let now_ms = now.as_millis() as u64;
        let window_ms = r.window_seconds * 1000;
        let pos = position(now_ms, window_ms);
        let mut base = String::with_capacity(self.scope.len() + r.name.len() + key.len() + 16);
        push_part(&mut base, &self.scope);
        base.push('|');
        push_part(&mut base, &r.name);
        base.push('|');
        base.push_str(&r.window_seconds.to_string());
        base.push('|');
        base.push_str(key);
        match self.store.hit(&base, pos, now_ms).await {
            Ok((cur, prev)) => {
                let v = decide(cur, prev, r.limit, pos);
                Check {
                    allowed: v.allowed,
                    count: v.estimate,
                    limit: r.limit,
                    retry_after_secs: v.retry_after_secs,
                    store_error: false,
                }
            }
            Err(_) => {
                let open = self.store.on_error == OnError::Open;
                Check {
                    allowed: open,
                    count: 0.0,
                    limit: r.limit,
                    retry_after_secs: if open { 0 } else { 1 },
                    store_error: true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
