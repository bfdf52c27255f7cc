//! Sliding-window-counter arithmetic, exact (integer milliseconds).
//!
//! Windows are aligned on the UNIX epoch: window `i` covers
//! `[i*W, (i+1)*W)` milliseconds. At time `t` in window `i`, with
//! `e = t - i*W` elapsed milliseconds, `cur` requests counted in window `i`
//! (including the one being checked) and `prev` in window `i-1`:
//!
//! ```text
//! estimate = cur + prev * (W - e) / W
//! allowed  = estimate <= limit
//! ```
//!
//! The comparison is done as `cur*W + prev*(W-e) <= limit*W` in integers, so
//! there is no rounding. Every checked request is counted, refused ones
//! included.

/// Where `now_ms` falls for a window of `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPos {
    pub index: u64,
    pub elapsed_ms: u64,
    pub window_ms: u64,
}

pub fn position(now_ms: u64, window_ms: u64) -> WindowPos {
    WindowPos {
        index: now_ms / window_ms,
        elapsed_ms: now_ms % window_ms,
        window_ms,
    }
}

/// Outcome of the arithmetic for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// The weighted estimate (`cur + prev*(W-e)/W`).
    pub estimate: f64,
    /// When refused: whole seconds (rounded up, at least 1) until one more
    /// request would be allowed if no further requests arrive; 0 when allowed.
    pub retry_after_secs: u64,
}

pub fn decide(cur: u64, prev: u64, limit: u64, pos: WindowPos) -> Verdict {
    let w = pos.window_ms as u128;
    let e = pos.elapsed_ms as u128;
    let scaled = cur as u128 * w + prev as u128 * (w - e);
    let allowed = scaled <= limit as u128 * w;
    let estimate = scaled as f64 / w as f64;
    let retry_after_secs = if allowed {
        0
    } else {
        let ms = retry_after_ms(cur, prev, limit, pos);
        ms.div_ceil(1000).max(1)
    };
    Verdict {
        allowed,
        estimate,
        retry_after_secs,
    }
}

/// Milliseconds from now until a request (counted as `cur + 1` in this
/// window, or `1` in a later one) would satisfy the limit.
fn retry_after_ms(cur: u64, prev: u64, limit: u64, pos: WindowPos) -> u64 {
    let w = pos.window_ms as u128;
    let e = pos.elapsed_ms as u128;
    let limit = limit as u128;
    let (cur, prev) = (cur as u128, prev as u128);
    // Later in the same window: need (cur+1)*W + prev*(W-e') <= limit*W.
    if limit > cur && prev > 0 {
        let room = (limit - cur - 1) * w; // prev*(W-e') must fit in here
        let max_rest = room / prev; // W - e' <= max_rest
        if max_rest < w {
            let e_needed = w - max_rest;
            if e_needed < w {
                return (e_needed.max(e) - e) as u64;
            }
        } else {
            return 0;
        }
    }
    // Next window: 1*W + cur*(W-e'') <= limit*W.
    let to_next = w - e;
    if limit == 0 {
        return u64::MAX / 2;
    }
    if cur == 0 {
        return to_next as u64;
    }
    let max_rest = (limit - 1) * w / cur;
    let e_needed = w.saturating_sub(max_rest);
    (to_next + e_needed) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 60_000;

    #[test]
    fn position_is_epoch_aligned() {
        assert_eq!(
            position(125_000, W),
            WindowPos {
                index: 2,
                elapsed_ms: 5_000,
                window_ms: W
            }
        );
    }

    #[test]
    fn exact_weighting() {
        // 25% into the window: previous weighs 0.75
        let pos = WindowPos {
            index: 10,
            elapsed_ms: 15_000,
            window_ms: W,
        };
        let v = decide(4, 8, 10, pos);
        assert_eq!(v.estimate, 4.0 + 6.0);
        assert!(v.allowed);
        let v = decide(5, 8, 10, pos);
        assert_eq!(v.estimate, 11.0);
        assert!(!v.allowed);
    }

    /// Brute force: the reported retry-after is the first whole second at
    /// which the next request passes.
    #[test]
    fn retry_after_matches_brute_force() {
        const W: u64 = 6_000;
        for limit in [1u64, 3, 10] {
            for cur in 1..=limit + 3 {
                for prev in [0u64, 1, 5, 12] {
                    for e in [0u64, 1, 1_700, 4_321, 5_999] {
                        let pos = WindowPos {
                            index: 100,
                            elapsed_ms: e,
                            window_ms: W,
                        };
                        let v = decide(cur, prev, limit, pos);
                        if v.allowed {
                            continue;
                        }
                        // simulate: next request after `ms` milliseconds
                        let first_ok = (0..3 * W)
                            .find(|&ms| {
                                let t = 100 * W + e + ms;
                                let p = position(t, W);
                                let (c2, p2) = match p.index - 100 {
                                    0 => (cur + 1, prev),
                                    1 => (1, cur),
                                    _ => (1, 0),
                                };
                                decide(c2, p2, limit, p).allowed
                            })
                            .unwrap();
                        assert_eq!(
                            v.retry_after_secs,
                            first_ok.div_ceil(1000).max(1),
                            "limit={limit} cur={cur} prev={prev} e={e}"
                        );
                    }
                }
            }
        }
    }
}
