//! Panics in the request path, contained.
//!
//! Pingora runs each HTTP/1 connection and each HTTP/2 stream in its own tokio task, and calls
//! the edge's `ProxyHttp` hooks from it. Left alone, a panic in a hook unwinds that task: tokio
//! catches it, so the worker thread and the other connections survive, but the client gets no
//! answer (its connection is dropped, or its h2 stream cancelled), `logging` never runs, and all
//! that is left is the standard library's "thread panicked" line on stderr, with no request id.
//!
//! [`contain`] runs a hook's future under `catch_unwind`; the hook turns a caught [`Panic`] into
//! an internal error (`Edge::settle` in `mod.rs`), which `fail_to_proxy` answers with a 500 and a
//! request id like any other error. The panic is counted in `portcullis_panics_total{hook}` and
//! logged once, at ERROR, with the request id, the panic's message and where it happened: the
//! panic hook [`install_hook`] sets up keeps the location (and a backtrace, with
//! `RUST_BACKTRACE=1`) for that line instead of printing its own. A panic anywhere else is printed
//! by the standard hook as before.
//!
//! Unwind safety: after a panic, the request's context and session are used only to answer the
//! 500 and log it, and the connection is closed then (`fail_to_proxy` never lets it be reused).
//! The state shared between requests recovers from a lock poisoned by a panic (every `Mutex` in
//! the request path is locked with `unwrap_or_else(PoisonError::into_inner)`).
//!
//! Debug builds (the binary the tests run) panic on purpose in a hook named by the
//! `x-portcullis-debug-panic` request header ([`debug_trigger`]), so that the tests can check all
//! of this end to end. Release builds have no such trigger: it is compiled out.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::Poll;

/// A panic caught by [`contain`].
#[derive(Debug)]
pub struct Panic {
    /// The panic's message (its payload, when that is a string).
    pub message: String,
    /// `file:line:column`, when the hook of [`install_hook`] saw the panic.
    pub location: Option<String>,
    /// A backtrace, when the hook saw the panic and backtraces are enabled
    /// (`RUST_BACKTRACE` / `RUST_LIB_BACKTRACE`).
    pub backtrace: Option<String>,
}

/// What the panic hook noted of a contained panic.
struct Noted {
    location: Option<String>,
    backtrace: Option<String>,
}

thread_local! {
    /// How many [`contain`] polls are under way on this thread (nested ones count too).
    static CONTAINING: Cell<u32> = const { Cell::new(0) };
    /// What the panic hook noted of the last contained panic on this thread.
    static NOTED: RefCell<Option<Noted>> = const { RefCell::new(None) };
}

/// Installs the panic hook that leaves contained panics to their [`contain`] (which logs them
/// with the request id) and passes every other panic to the hook that was there before.
/// Idempotent.
pub fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINING.with(Cell::get) == 0 {
                return previous(info);
            }
            let backtrace = Backtrace::capture();
            let noted = Noted {
                location: info.location().map(|l| l.to_string()),
                backtrace: (backtrace.status() == BacktraceStatus::Captured)
                    .then(|| backtrace.to_string()),
            };
            NOTED.with(|n| *n.borrow_mut() = Some(noted));
        }));
    });
}

/// Counts this thread's [`contain`] polls; dropped when a poll ends, however it ends.
struct Containing;

impl Containing {
    fn enter() -> Containing {
        CONTAINING.with(|c| c.set(c.get() + 1));
        Containing
    }
}

impl Drop for Containing {
    fn drop(&mut self) {
        CONTAINING.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// Runs `fut` to completion, catching a panic in any of its polls. After a panic the future is
/// not polled again (it is dropped). Costs no allocation: the future is pinned in place.
pub async fn contain<F: Future>(fut: F) -> Result<F::Output, Panic> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        let polled = {
            let _containing = Containing::enter();
            catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
        };
        match polled {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(caught(payload))),
        }
    })
    .await
}

/// The [`Panic`] for a caught payload, with what the hook noted of it.
fn caught(payload: Box<dyn std::any::Any + Send>) -> Panic {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic payload that is not a string)".to_string());
    let noted = NOTED.with(|n| n.borrow_mut().take());
    Panic {
        message,
        location: noted.as_ref().and_then(|n| n.location.clone()),
        backtrace: noted.and_then(|n| n.backtrace),
    }
}

/// The request header that makes a debug build panic in the hook it names.
#[cfg(debug_assertions)]
pub const DEBUG_TRIGGER: &str = "x-portcullis-debug-panic";

/// Debug builds: panics when the request's [`DEBUG_TRIGGER`] header names `hook`, so that the
/// tests can check how a panic is contained. Release builds: nothing.
#[cfg(debug_assertions)]
pub fn debug_trigger(req: &pingora::http::RequestHeader, hook: &str) {
    if req
        .headers
        .get(DEBUG_TRIGGER)
        .is_some_and(|v| v.as_bytes() == hook.as_bytes())
    {
        panic!("deliberate panic in {hook} ({DEBUG_TRIGGER}, debug builds only)");
    }
}

/// Debug builds: panics when the request's trigger header names `hook`. Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn debug_trigger(_req: &pingora::http::RequestHeader, _hook: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message_and_location() {
        install_hook();
        let out = contain(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("boom {}", 7);
            }
            1
        })
        .await;
        let panic = out.expect_err("the panic is caught");
        assert_eq!(panic.message, "boom 7");
        let location = panic.location.expect("the hook noted where");
        assert!(location.contains("panics.rs"), "{location}");
        // The hook is left for the next panic: nothing stays noted on this thread.
        assert!(NOTED.with(|n| n.borrow().is_none()));
        assert_eq!(CONTAINING.with(Cell::get), 0);
    }

    /// Only `cargo test --release` runs this: a release build cannot be made to panic by a header.
    #[cfg(not(debug_assertions))]
    #[test]
    fn release_builds_have_no_trigger() {
        let mut req = pingora::http::RequestHeader::build("GET", b"/", None).expect("request");
        req.insert_header("x-portcullis-debug-panic", "request_filter")
            .expect("header");
        debug_trigger(&req, "request_filter");
    }

    #[tokio::test]
    async fn a_future_that_does_not_panic_gives_its_output() {
        let out = contain(async {
            tokio::task::yield_now().await;
            "done"
        })
        .await;
        assert_eq!(out.expect("no panic"), "done");
        assert_eq!(CONTAINING.with(Cell::get), 0);
    }
}
