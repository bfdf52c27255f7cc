//! Shared counters in Redis: one script round trip per check.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};

/// INCR the current window key (setting its TTL when created) and read the
/// previous window key, atomically. KEYS[1] = current, KEYS[2] = previous,
/// ARGV[1] = TTL in ms. Returns {current, previous}.
const HIT_SCRIPT: &str = r"
local c = redis.call('INCR', KEYS[1])
if c == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local p = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
return {c, p}
";

/// Wait at least this long between reconnection attempts.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// Drop the connection after this many consecutive timeouts.
const MAX_CONSECUTIVE_TIMEOUTS: u32 = 3;
/// At most one warning per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a store call failed.
#[derive(Debug)]
pub enum StoreError {
    Timeout,
    Backoff,
    Redis(RedisError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => write!(f, "timed out"),
            StoreError::Backoff => write!(f, "not connected (waiting before reconnecting)"),
            StoreError::Redis(e) => write!(f, "{e}"),
        }
    }
}

/// Redis-backed store; cheap to share (`Arc`) between sites and reloads.
pub struct RedisStore {
    client: Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    connect_lock: tokio::sync::Mutex<()>,
    /// ms since `epoch` before which no reconnect is tried.
    next_connect_ms: AtomicU64,
    consecutive_timeouts: AtomicU32,
    epoch: Instant,
    timeout: Duration,
    prefix: String,
    script: Script,
    errors: AtomicU64,
    last_log_ms: AtomicU64,
}

impl RedisStore {
    /// Parse the URL; does not connect (connection is lazy).
    pub fn new(url: &str, timeout: Duration, prefix: &str) -> Result<Self, String> {
        let client = Client::open(url).map_err(|e| format!("invalid redis url: {e}"))?;
        Ok(RedisStore {
            client,
            conn: Mutex::new(None),
            connect_lock: tokio::sync::Mutex::new(()),
            next_connect_ms: AtomicU64::new(0),
            consecutive_timeouts: AtomicU32::new(0),
            epoch: Instant::now(),
            timeout,
            prefix: prefix.to_string(),
            script: Script::new(HIT_SCRIPT),
            errors: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(u64::MAX),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Errors and timeouts so far (export as a counter).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn mono_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn drop_connection(&self) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        if self.mono_ms() < self.next_connect_ms.load(Ordering::Relaxed) {
            return Err(StoreError::Backoff);
        }
        let _guard = self.connect_lock.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        if self.mono_ms() < self.next_connect_ms.load(Ordering::Relaxed) {
            return Err(StoreError::Backoff);
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        match self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(c) => {
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
                tracing::info!(target: "portcullis::ratelimit", "connected to redis rate-limit store");
                Ok(c)
            }
            Err(e) => {
                self.next_connect_ms.store(
                    self.mono_ms() + RECONNECT_BACKOFF.as_millis() as u64,
                    Ordering::Relaxed,
                );
                Err(StoreError::Redis(e))
            }
        }
    }

    /// Run `f` on the shared connection under the store timeout; on failure
    /// count the error, maybe drop the connection, and log (rate-limited).
    async fn run<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let res = tokio::time::timeout(self.timeout, async {
            let conn = self.connection().await?;
            f(conn).await.map_err(StoreError::Redis)
        })
        .await
        .unwrap_or(Err(StoreError::Timeout));
        match &res {
            Ok(_) => {
                self.consecutive_timeouts.store(0, Ordering::Relaxed);
            }
            Err(err) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let drop_conn = match err {
                    StoreError::Timeout => {
                        self.consecutive_timeouts.fetch_add(1, Ordering::Relaxed) + 1
                            >= MAX_CONSECUTIVE_TIMEOUTS
                    }
                    StoreError::Backoff => false,
                    StoreError::Redis(e) => {
                        e.is_io_error()
                            || e.is_connection_dropped()
                            || e.is_connection_refusal()
                            || e.is_timeout()
                            || e.is_unrecoverable_error()
                    }
                };
                if drop_conn {
                    self.consecutive_timeouts.store(0, Ordering::Relaxed);
                    self.drop_connection();
                }
                self.log_error(what, err);
            }
        }
        res
    }

    fn log_error(&self, what: &str, err: &StoreError) {
        let now = self.mono_ms();
        let last = self.last_log_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                target: "portcullis::ratelimit",
                error = %err,
                total_errors = self.errors(),
                "redis rate-limit store {what} failed (further errors suppressed for {}s)",
                LOG_EVERY.as_secs()
            );
        }
    }

    /// Count a hit; returns `(current, previous)` window counts.
    pub async fn hit(
        &self,
        base_key: &str,
        index: u64,
        window_ms: u64,
    ) -> Result<(u64, u64), StoreError> {
        let cur_key = format!("{}{{{}}}:{}", self.prefix, base_key, index);
        let prev_key = format!("{}{{{}}}:{}", self.prefix, base_key, index.wrapping_sub(1));
        // Lives until the end of the next window (plus slack for clock skew).
        let ttl_ms = window_ms * 2 + 1000;
        let script = &self.script;
        self.run("check", |mut conn| async move {
            let (c, p): (u64, u64) = script
                .key(&cur_key)
                .key(&prev_key)
                .arg(ttl_ms)
                .invoke_async(&mut conn)
                .await?;
            Ok((c, p))
        })
        .await
    }

    pub async fn publish_ejection(
        &self,
        pool: &str,
        backend: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.ejection_key(pool, backend);
        let ms = ttl.as_millis().max(1) as u64;
        self.run("publish_ejection", |mut conn| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    pub async fn is_ejected(&self, pool: &str, backend: &str) -> Result<bool, StoreError> {
        let key = self.ejection_key(pool, backend);
        self.run("is_ejected", |mut conn| async move {
            redis::cmd("EXISTS")
                .arg(&key)
                .query_async::<bool>(&mut conn)
                .await
        })
        .await
    }

    fn ejection_key(&self, pool: &str, backend: &str) -> String {
        format!("{}ejected:{}:{}", self.prefix, pool, backend)
    }
}
