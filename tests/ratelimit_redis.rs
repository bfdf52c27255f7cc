//! Rate limiting shared through a real `redis-server` (started by the test on
//! a free loopback port, killed at the end). Skipped, with a message, when
//! `redis-server` is not installed.

mod common;

use common::RedisServer;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis::ratelimit::{
    compile, Check, ManualClock, OnError, RateLimitConfig, RateLimitStore, RateLimitStoreConfig,
    RateLimiter, StoreKind,
};

const TIMEOUT_MS: u64 = 50;
/// Allowed lateness over timeout_ms for one check (debug build, busy CI).
const MARGIN_MS: u64 = 100;
/// Start of a 60 s window, in ms since the epoch.
const T0: u64 = 1_700_000_040_000;

fn unique_prefix(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:{tag}:{}:{nanos}:", std::process::id())
}

fn store(url: &str, on_error: OnError, prefix: &str) -> Arc<RateLimitStore> {
    let cfg = RateLimitStoreConfig {
        kind: StoreKind::Redis,
        url: Some(url.to_string()),
        on_error,
        timeout_ms: TIMEOUT_MS,
        key_prefix: prefix.to_string(),
    };
    Arc::new(RateLimitStore::from_config(&cfg, "rate_limit_store").expect("store config"))
}

fn one_rule(limit: u64, window_seconds: u64) -> portcullis::ratelimit::RateLimitRules {
    let cfg = RateLimitConfig {
        name: "global".into(),
        key: vec![],
        limit,
        window_seconds,
        action: Default::default(),
        when: vec![],
    };
    compile(&[cfg], "sites[0].rate_limits").unwrap()
}

/// Two limiters (two edges) on one redis enforce one global limit under
/// concurrent load; the weighted previous window is read back from redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_edges_share_one_limit() {
    let Some(srv) = RedisServer::start(None) else {
        return;
    };
    let prefix = unique_prefix("share");
    let clock = Arc::new(ManualClock::new(T0 + 1_000));
    let limit = 300u64;
    let edges: Vec<Arc<RateLimiter>> = (0..2)
        .map(|_| {
            Arc::new(
                RateLimiter::new(
                    "site",
                    one_rule(limit, 60),
                    store(&srv.url(), OnError::Open, &prefix),
                )
                .with_clock(clock.clone()),
            )
        })
        .collect();

    let mut tasks = Vec::new();
    for t in 0..40 {
        let edge = edges[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut allowed = 0u64;
            let mut errors = 0u64;
            for _ in 0..25 {
                let c = edge.check(0, "").await;
                allowed += c.allowed as u64;
                errors += c.store_error as u64;
            }
            (allowed, errors)
        }));
    }
    let (mut allowed, mut errors) = (0, 0);
    for t in tasks {
        let (a, e) = t.await.unwrap();
        allowed += a;
        errors += e;
    }
    assert_eq!(errors, 0, "no store errors expected");
    let tolerance = limit / 10;
    assert!(
        allowed.abs_diff(limit) <= tolerance,
        "1000 requests over two edges: {allowed} allowed, limit {limit}"
    );
    eprintln!("two edges, 1000 concurrent requests: {allowed} allowed (limit {limit})");
    assert_eq!(edges[0].store_errors() + edges[1].store_errors(), 0);

    // 1000 counted in the previous window; 45 s into the next one it weighs 0.25.
    clock.set_ms(T0 + 60_000 + 45_000);
    let c: Check = edges[1].check(0, "").await;
    assert_eq!(c.count, 1.0 + 250.0);
    assert!(c.allowed);
    for _ in 0..49 {
        assert!(edges[0].check(0, "").await.allowed);
    }
    let c = edges[1].check(0, "").await; // 51 + 250 = 301 > 300
    assert!(!c.allowed);
    assert_eq!(c.count, 301.0);
    // 52 + 1000*(1-f) <= 300  ->  f >= 0.752 -> 45.12 s: 0.12 s -> 1 s
    assert_eq!(c.retry_after_secs, 1);

    // rough per-check latency over loopback, sequential
    let n = 2000;
    let start = Instant::now();
    for i in 0..n {
        edges[0].check(0, &format!("k{}", i % 100)).await;
    }
    eprintln!(
        "redis store: {:?} per check (sequential, loopback)",
        start.elapsed() / n
    );
}

/// Killing redis: fail-open allows, fail-closed refuses, both count the
/// error and answer within timeout_ms + margin; restarting redis recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_open_and_closed() {
    let Some(mut srv) = RedisServer::start(None) else {
        return;
    };
    let port = srv.port;
    let prefix = unique_prefix("outage");
    let clock = Arc::new(ManualClock::new(T0 + 1_000));
    let open = Arc::new(
        RateLimiter::new(
            "site",
            one_rule(1000, 60),
            store(&srv.url(), OnError::Open, &prefix),
        )
        .with_clock(clock.clone()),
    );
    let closed = Arc::new(
        RateLimiter::new(
            "site",
            one_rule(1000, 60),
            store(&srv.url(), OnError::Closed, &prefix),
        )
        .with_clock(clock.clone()),
    );
    for l in [&open, &closed] {
        let c = l.check(0, "warm").await;
        assert!(c.allowed && !c.store_error);
    }

    // kill redis while a concurrent load is running
    let load = {
        let open = open.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for _ in 0..200 {
                let s = Instant::now();
                let c = open.check(0, "load").await;
                worst = worst.max(s.elapsed());
                assert!(c.allowed, "fail-open must allow, even while redis dies");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            worst
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    srv.kill();
    let worst = load.await.unwrap();
    assert!(
        worst <= Duration::from_millis(TIMEOUT_MS + MARGIN_MS),
        "slowest check {worst:?}"
    );

    let errors_before = (open.store_errors(), closed.store_errors());
    for i in 0..20 {
        for (l, expect_allowed) in [(&open, true), (&closed, false)] {
            let s = Instant::now();
            let c = l.check(0, "after").await;
            let took = s.elapsed();
            assert!(c.store_error, "check {i} must report the store error");
            assert_eq!(c.allowed, expect_allowed);
            assert!(
                took <= Duration::from_millis(TIMEOUT_MS + MARGIN_MS),
                "check took {took:?}"
            );
            if !expect_allowed {
                assert!(c.retry_after_secs >= 1);
            }
        }
    }
    assert!(open.store_errors() >= errors_before.0 + 20);
    assert!(closed.store_errors() >= errors_before.1 + 20);

    // concurrent checks during the outage are bounded too
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let closed = closed.clone();
        tasks.push(tokio::spawn(async move {
            let s = Instant::now();
            let c = closed.check(0, "burst").await;
            (c, s.elapsed())
        }));
    }
    for t in tasks {
        let (c, took) = t.await.unwrap();
        assert!(!c.allowed && c.store_error);
        assert!(
            took <= Duration::from_millis(TIMEOUT_MS + MARGIN_MS),
            "{took:?}"
        );
    }

    // redis comes back on the same port: both limiters reconnect lazily
    let _srv2 = RedisServer::start(Some(port)).expect("restart");
    for l in [&open, &closed] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c = l.check(0, "back").await;
            if !c.store_error {
                assert!(c.allowed);
                break;
            }
            assert!(Instant::now() < deadline, "did not reconnect");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A server that accepts connections but never answers: each check is cut
/// at timeout_ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_store_times_out() {
    if common::redis_server_path().is_none() {
        eprintln!("SKIPPED: redis-server is not installed");
        return;
    }
    let addr = common::silent_server().await;
    let url = format!("redis://{addr}/0");
    for (on_error, expect) in [(OnError::Open, true), (OnError::Closed, false)] {
        let l = RateLimiter::new("site", one_rule(10, 60), store(&url, on_error, "stall:"));
        for _ in 0..10 {
            let s = Instant::now();
            let c = l.check(0, "k").await;
            let took = s.elapsed();
            assert!(c.store_error);
            assert_eq!(c.allowed, expect);
            assert!(
                took <= Duration::from_millis(TIMEOUT_MS + MARGIN_MS),
                "{took:?}"
            );
        }
        assert!(l.store_errors() >= 10);
    }
}

/// Backend ejections published by one edge are seen by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejections_are_shared() {
    let Some(srv) = RedisServer::start(None) else {
        return;
    };
    let prefix = unique_prefix("eject");
    let a = store(&srv.url(), OnError::Open, &prefix);
    let b = store(&srv.url(), OnError::Open, &prefix);
    assert!(!b.is_ejected("pool1", "10.0.0.1:8080").await);
    a.publish_ejection("pool1", "10.0.0.1:8080", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(b.is_ejected("pool1", "10.0.0.1:8080").await);
    assert!(!b.is_ejected("pool1", "10.0.0.2:8080").await);
    assert!(!b.is_ejected("pool2", "10.0.0.1:8080").await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!b.is_ejected("pool1", "10.0.0.1:8080").await);
}
