use super::*;
use crate::customrules::OwnedRequestFacts;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Site {
    rate_limits: Vec<RateLimitConfig>,
}

fn rules(src: &str) -> RateLimitRules {
    let site: Site = toml::from_str(src).expect("toml");
    compile(&site.rate_limits, "sites[0].rate_limits").expect("compiles")
}

const W60: u64 = 60_000;
/// Start of some window (a multiple of 60 s), in ms since the epoch.
const T0: u64 = 1_700_000_040_000;

fn limiter(src: &str, clock: Arc<ManualClock>) -> RateLimiter {
    RateLimiter::new("site-a", rules(src), Arc::new(RateLimitStore::memory())).with_clock(clock)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

const ONE_RULE: &str = r#"
[[rate_limits]]
name = "per-ip"
key = ["client_ip"]
limit = 10
window_seconds = 60
"#;

#[test]
fn exact_limit_and_weighted_rollover() {
    assert_eq!(T0 % W60, 0);
    let clock = Arc::new(ManualClock::new(T0 + 1_000));
    let rl = limiter(ONE_RULE, clock.clone());
    block_on(async {
        for i in 1..=10u64 {
            let c = rl.check(0, "1.2.3.4").await;
            assert!(c.allowed, "request {i}");
            assert_eq!(c.count, i as f64);
            assert_eq!(c.limit, 10);
            assert_eq!(c.retry_after_secs, 0);
            assert!(!c.store_error);
        }
        // 11th is refused; nothing in the previous window so it clears at
        // the next window: 1 + 11*(1-f) <= 10  <=>  f >= 2/11 -> 10.909 s
        // into the next window; now is 1 s into this one: 59 + 10.909 = 69.909 -> 70 s
        let c = rl.check(0, "1.2.3.4").await;
        assert!(!c.allowed);
        assert_eq!(c.count, 11.0);
        assert_eq!(c.retry_after_secs, 70);
        // another key is independent
        assert!(rl.check(0, "5.6.7.8").await.allowed);

        // 15 s (25 %) into the next window: previous (11 counted) weighs 0.75
        clock.set_ms(T0 + W60 + 15_000);
        // estimate = cur + 8.25; cur = 1 -> 9.25 allowed, cur = 2 -> 10.25 refused
        let c = rl.check(0, "1.2.3.4").await;
        assert!(c.allowed);
        assert_eq!(c.count, 1.0 + 11.0 * 0.75);
        let c = rl.check(0, "1.2.3.4").await;
        assert!(!c.allowed);
        assert_eq!(c.count, 2.0 + 8.25);
        // next request passes when 3 + 11*(1-f) <= 10 -> f >= 4/11 (21.818 s): 6.818 s -> 7
        assert_eq!(c.retry_after_secs, 7);

        clock.set_ms(T0 + W60 + 21_818);
        assert!(!rl.check(0, "1.2.3.4").await.allowed); // 3 + 11*0.63637 = 10.00003
        clock.set_ms(T0 + W60 + 30_000);
        // 4 + 11*0.5 = 9.5
        let c = rl.check(0, "1.2.3.4").await;
        assert!(c.allowed);
        assert_eq!(c.count, 9.5);

        // two windows later nothing remains
        clock.set_ms(T0 + 3 * W60);
        let c = rl.check(0, "1.2.3.4").await;
        assert_eq!(c.count, 1.0);
    });
}

#[test]
fn explicit_time_api() {
    let rl = limiter(
        "[[rate_limits]]\nname = \"g\"\nlimit = 2\nwindow_seconds = 1\n",
        Arc::new(ManualClock::new(0)),
    );
    block_on(async {
        let t = Duration::from_millis(5_000);
        assert!(rl.check_at(0, "", t).await.allowed);
        assert!(rl.check_at(0, "", t).await.allowed);
        let c = rl.check_at(0, "", t).await;
        assert!(!c.allowed);
        // next window: 1 + 3*(1-f) <= 2 -> f >= 2/3 -> 1.667 s -> 2
        assert_eq!(c.retry_after_secs, 2);
        // half a window later: 1 + 3*0.5 = 2.5 > 2; at 2/3 elapsed: 1 + 3*(1/3) = 2
        assert!(
            !rl.check_at(0, "", Duration::from_millis(6_500))
                .await
                .allowed
        );
        let c = rl.check_at(0, "", Duration::from_millis(6_800)).await;
        assert_eq!(c.count, 2.0 + 3.0 * 0.2);
        assert!(!c.allowed);
    });
}

#[test]
fn key_composition() {
    let rl = limiter(
        r#"
[[rate_limits]]
name = "combo"
key = ["client_ip", "client_country", "path", "header:X-Api-Key"]
limit = 1
window_seconds = 10

[[rate_limits]]
name = "global"
limit = 1
window_seconds = 10
"#,
        Arc::new(ManualClock::new(T0)),
    );
    let req = OwnedRequestFacts::get("/a|b%?q=1")
        .with_ip("::ffff:192.0.2.1")
        .with_country("de")
        .with_header("x-api-key", "k#1");
    assert_eq!(
        rl.key_for(0, &req).as_deref(),
        Some("192.0.2.1|DE|/a%7Cb%25|k%231")
    );
    assert_eq!(rl.key_for(1, &req).as_deref(), Some(""));
    // a missing part means the rule does not count the request
    let no_key = OwnedRequestFacts::get("/")
        .with_ip("192.0.2.1")
        .with_country("DE");
    assert_eq!(rl.key_for(0, &no_key), None);
    let no_country = OwnedRequestFacts::get("/")
        .with_ip("192.0.2.1")
        .with_header("x-api-key", "k");
    assert_eq!(rl.key_for(0, &no_country), None);
    // long values are hashed, deterministically
    let long = "x".repeat(500);
    let a = OwnedRequestFacts::get("/")
        .with_ip("10.0.0.1")
        .with_country("DE")
        .with_header("x-api-key", &long);
    let k = rl.key_for(0, &a).unwrap();
    assert!(
        k.ends_with(&format!("#{:016x}", fnv1a64(long.as_bytes()))),
        "{k}"
    );
    assert!(k.len() < 60);
    // plan: only the global rule for the request without the key header
    assert_eq!(
        rl.plan(&no_key),
        vec![PendingCheck {
            rule: 1,
            key: String::new()
        }]
    );
}

#[test]
fn conditions_and_outcome() {
    let clock = Arc::new(ManualClock::new(T0));
    let rl = limiter(
        r#"
[[rate_limits]]
name = "api-log"
key = ["client_ip"]
limit = 1
window_seconds = 60
action = "log"
when = [ { match = "uri_path", operator = "begins_with", values = ["/api/"] } ]

[[rate_limits]]
name = "api-block"
key = ["client_ip"]
limit = 2
window_seconds = 60
when = [
  { match = "uri_path", operator = "begins_with", values = ["/api/"] },
  { match = "request_method", operator = "equals", values = ["GET"], negate = true },
]
"#,
        clock,
    );
    let post = OwnedRequestFacts::get("/api/x")
        .with_method("POST")
        .with_ip("10.0.0.1");
    let get = OwnedRequestFacts::get("/api/x").with_ip("10.0.0.1");
    let other = OwnedRequestFacts::get("/static/x")
        .with_method("POST")
        .with_ip("10.0.0.1");
    assert_eq!(rl.plan(&other), vec![]);
    assert_eq!(rl.plan(&get).len(), 1);
    block_on(async {
        let o = rl.run(rl.plan(&post)).await;
        assert_eq!(o, RateLimitOutcome::default());
        // 2nd: log rule exceeded (2 > 1), block rule at 2 <= 2
        let o = rl.run(rl.plan(&post)).await;
        assert!(o.blocked.is_none());
        assert_eq!(o.logged.len(), 1);
        assert_eq!(o.logged[0].rule, "api-log");
        assert_eq!(o.logged[0].action, RateLimitAction::Log);
        // 3rd: blocked by api-block
        let o = rl.run(rl.plan(&post)).await;
        let b = o.blocked.expect("blocked");
        assert_eq!(b.rule, "api-block");
        assert_eq!(b.check.count, 3.0);
        assert!(b.check.retry_after_secs >= 1);
        // GETs are only counted by the log rule
        let o = rl.run(rl.plan(&get)).await;
        assert!(o.blocked.is_none());
        assert_eq!(o.logged[0].check.count, 4.0);
    });
}

#[test]
fn compile_errors() {
    let site: Site = toml::from_str(
        r#"
[[rate_limits]]
name = "a"
key = ["client_ip", "cookie:x", "header:bad header", "client_ip"]
limit = 0
window_seconds = 0
when = [ { match = "nope", operator = "any" } ]

[[rate_limits]]
name = "a"
limit = 1
window_seconds = 86401
"#,
    )
    .unwrap();
    let errs = compile(&site.rate_limits, "sites[2].rate_limits").unwrap_err();
    let expect = [
        "sites[2].rate_limits[0].limit: must be at least 1",
        "sites[2].rate_limits[0].window_seconds: must be between",
        "sites[2].rate_limits[0].key[1]: unknown key part `cookie:x`",
        "sites[2].rate_limits[0].key[2]: invalid header name",
        "sites[2].rate_limits[0].key[3]: `client_ip` is listed twice",
        "sites[2].rate_limits[0].when[0].match: unknown match variable",
        "sites[2].rate_limits[1].name: duplicate rate limit name `a`",
        "sites[2].rate_limits[1].window_seconds: must be between",
    ];
    for p in expect {
        assert!(
            errs.iter().any(|e| e.starts_with(p)),
            "missing `{p}` in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    assert!(toml::from_str::<Site>(
        "[[rate_limits]]\nname=\"a\"\nlimit=1\nwindow_seconds=1\nburst=3\n"
    )
    .is_err());
    assert!(toml::from_str::<Site>(
        "[[rate_limits]]\nname=\"a\"\nlimit=1\nwindow_seconds=1\naction=\"deny\"\n"
    )
    .is_err());
}

#[test]
fn store_config() {
    #[derive(Deserialize)]
    struct Top {
        rate_limit_store: RateLimitStoreConfig,
    }
    let t: Top = toml::from_str(
        "[rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\non_error = \"closed\"\n",
    )
    .unwrap();
    let c = &t.rate_limit_store;
    assert_eq!(c.timeout_ms, 50);
    assert_eq!(c.key_prefix, "portcullis:rl:");
    assert_eq!(c.on_error, OnError::Closed);
    let s = RateLimitStore::from_config(c, "rate_limit_store").unwrap();
    assert!(s.is_shared());
    assert_eq!(s.on_error(), OnError::Closed);

    let t: Top = toml::from_str("[rate_limit_store]\n").unwrap();
    assert_eq!(t.rate_limit_store, RateLimitStoreConfig::default());

    let bad = RateLimitStoreConfig {
        kind: StoreKind::Redis,
        url: None,
        timeout_ms: 0,
        ..Default::default()
    };
    let errs = RateLimitStore::validate(&bad, "rate_limit_store");
    assert_eq!(
        errs,
        vec![
            "rate_limit_store.timeout_ms: must be between 1 and 5000".to_string(),
            "rate_limit_store.url: required when kind = \"redis\"".to_string(),
        ]
    );
    let bad_url = RateLimitStoreConfig {
        kind: StoreKind::Redis,
        url: Some("http://x".into()),
        ..Default::default()
    };
    assert!(RateLimitStore::validate(&bad_url, "s")[0].starts_with("s.url: "));
    assert!(toml::from_str::<Top>("[rate_limit_store]\nkind=\"memcached\"\n").is_err());
}

#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rl = limiter(ONE_RULE, Arc::new(ManualClock::new(T0)));
    let f = rl.run(Vec::new());
    assert_send(&f);
    let c = rl.check(0, "k");
    assert_send(&c);
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<RateLimiter>();
    assert_sync::<RateLimitStore>();
}

#[test]
fn memory_concurrent_exact() {
    let rl = Arc::new(limiter(
        "[[rate_limits]]\nname = \"g\"\nlimit = 500\nwindow_seconds = 60\n",
        Arc::new(ManualClock::new(T0)),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let allowed = rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..8 {
            let rl = rl.clone();
            handles.push(tokio::spawn(async move {
                let mut n = 0;
                for _ in 0..200 {
                    if rl.check(0, "").await.allowed {
                        n += 1;
                    }
                }
                n
            }));
        }
        let mut total = 0;
        for h in handles {
            total += h.await.unwrap();
        }
        total
    });
    assert_eq!(allowed, 500);
}

#[test]
fn memory_ejections() {
    let s = RateLimitStore::memory();
    block_on(async {
        s.publish_ejection("p", "b", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(s.is_ejected("p", "b").await);
        assert!(!s.is_ejected("p", "c").await);
    });
}

/// Rough per-check cost of the in-memory store (run with --release --nocapture).
#[test]
fn memory_check_cost() {
    let rl = limiter(ONE_RULE, Arc::new(ManualClock::new(T0)));
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let n = 200_000;
    let start = std::time::Instant::now();
    block_on(async {
        for i in 0..n {
            std::hint::black_box(rl.check(0, &keys[i % keys.len()]).await);
        }
    });
    let per = start.elapsed() / n as u32;
    eprintln!("memory store: {per:?} per check");
}
