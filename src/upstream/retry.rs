//! A retry budget: retries for timeouts and error statuses may add at most a
//! share of extra load, so a sick pool is not hammered by its own clients.
//! Each first try deposits `percent/100` of a token; each retry spends one.
//! A small floor lets a quiet pool retry at all.

use std::sync::atomic::{AtomicI64, Ordering};

const MILLI: i64 = 1000;
/// Tokens a pool may save up.
const CAP_TOKENS: i64 = 10;
/// Tokens a pool starts with, so the first failures after start can be retried.
const START_TOKENS: i64 = 3;

#[derive(Debug)]
pub struct RetryBudget {
    deposit_milli: i64,
    balance_milli: AtomicI64,
}

impl RetryBudget {
    pub fn new(percent: u32) -> Self {
        RetryBudget {
            deposit_milli: i64::from(percent.min(100)) * MILLI / 100,
            balance_milli: AtomicI64::new(START_TOKENS * MILLI),
        }
    }

    /// Called once per request (first try).
    pub fn deposit(&self) {
        let cap = CAP_TOKENS * MILLI;
        let _ = self
            .balance_milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + self.deposit_milli).min(cap))
            });
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_spend(&self) -> bool {
        self.balance_milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= MILLI).then_some(b - MILLI)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_the_share_of_requests() {
        let budget = RetryBudget::new(20);
        // Drain the starting balance.
        while budget.try_spend() {}
        for _ in 0..100 {
            budget.deposit();
        }
        let mut retries = 0;
        while budget.try_spend() {
            retries += 1;
        }
        assert_eq!(retries, 10, "capped at 10 saved tokens");
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(
            budget.try_spend() && budget.try_spend(),
            "10 requests at 20% buy 2 retries"
        );
        assert!(!budget.try_spend());
    }
}
