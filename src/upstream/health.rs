//! Backend health as the request path sees it: probe verdicts, passive
//! failure counting with ejection, and requests in flight. All lock-free.

use once_cell::sync::Lazy;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

/// Milliseconds on a process-wide monotonic clock.
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Live state of one backend.
#[derive(Debug)]
pub struct BackendHealth {
    /// Verdict of the active probes (true when the pool has none).
    probe_healthy: AtomicBool,
    probe_streak: AtomicU32,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    outstanding: AtomicUsize,
    ejections: AtomicU64,
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth {
            probe_healthy: AtomicBool::new(true),
            probe_streak: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            outstanding: AtomicUsize::new(0),
            ejections: AtomicU64::new(0),
        }
    }
}

/// What changed after recording an event, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Ejected,
    BecameHealthy,
    BecameUnhealthy,
}

impl BackendHealth {
    /// May this backend get traffic now?
    pub fn available(&self, now: u64) -> bool {
        self.probe_healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now
    }

    pub fn probe_healthy(&self) -> bool {
        self.probe_healthy.load(Ordering::Relaxed)
    }

    pub fn ejected(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now
    }

    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn track(self: &std::sync::Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A request to this backend succeeded.
    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// A request to this backend failed. After `threshold` failures in a row the
    /// backend is ejected for `cooldown`; with active probes it also needs a
    /// passing probe before it comes back.
    pub fn record_failure(
        &self,
        threshold: u32,
        cooldown: Duration,
        has_probes: bool,
    ) -> Transition {
        if threshold == 0 {
            return Transition::None;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < threshold {
            return Transition::None;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until_ms
            .store(now_ms() + cooldown.as_millis() as u64, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        if has_probes {
            self.probe_healthy.store(false, Ordering::Relaxed);
            self.probe_streak.store(0, Ordering::Relaxed);
        }
        Transition::Ejected
    }

    /// Records one probe result; flips the verdict after `threshold` agreeing results in a row.
    pub fn record_probe(
        &self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Transition {
        let healthy = self.probe_healthy.load(Ordering::Relaxed);
        if ok == healthy {
            self.probe_streak.store(0, Ordering::Relaxed);
            return Transition::None;
        }
        let streak = self.probe_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if ok {
            healthy_threshold
        } else {
            unhealthy_threshold
        };
        if streak < needed.max(1) {
            return Transition::None;
        }
        self.probe_streak.store(0, Ordering::Relaxed);
        self.probe_healthy.store(ok, Ordering::Relaxed);
        if ok {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            Transition::BecameHealthy
        } else {
            Transition::BecameUnhealthy
        }
    }
}

/// A request in flight to a backend; decrements the count when dropped.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<BackendHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_and_success_resets() {
        let h = BackendHealth::default();
        assert_eq!(
            h.record_failure(3, Duration::from_secs(10), false),
            Transition::None
        );
        h.record_success();
        assert_eq!(
            h.record_failure(3, Duration::from_secs(10), false),
            Transition::None
        );
        assert_eq!(
            h.record_failure(3, Duration::from_secs(10), false),
            Transition::None
        );
        assert_eq!(
            h.record_failure(3, Duration::from_secs(10), false),
            Transition::Ejected
        );
        assert!(!h.available(now_ms()));
        assert!(h.available(now_ms() + 10_001));
    }

    #[test]
    fn probes_flip_after_thresholds() {
        let h = BackendHealth::default();
        assert_eq!(h.record_probe(false, 2, 2), Transition::None);
        assert_eq!(h.record_probe(false, 2, 2), Transition::BecameUnhealthy);
        assert!(!h.available(now_ms()));
        assert_eq!(h.record_probe(true, 2, 2), Transition::None);
        assert_eq!(h.record_probe(true, 2, 2), Transition::BecameHealthy);
        assert!(h.available(now_ms()));
    }

    #[test]
    fn ejection_with_probes_needs_a_passing_probe() {
        let h = BackendHealth::default();
        h.record_failure(1, Duration::from_millis(0), true);
        assert!(
            !h.available(now_ms() + 1),
            "cool-down over, but no probe passed yet"
        );
        h.record_probe(true, 1, 1);
        assert!(h.available(now_ms() + 1));
    }
}
