//! Real network peers on 127.0.0.1 for tests and benchmarks, in this crate and others:
//! [`SmtpSink`] receives email, [`HttpSink`] receives webhooks. Compiled into the library
//! (not `cfg(test)`) so other crates' tests can use them.

mod http_sink;
mod smtp_sink;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

pub use http_sink::{HttpSink, ReceivedRequest};
pub use smtp_sink::{ReceivedEmail, SmtpSink};

/// Locks, ignoring poisoning: a panicking test thread should not hide what was received.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes waiters when something arrives.
#[derive(Default)]
struct Signal(Notify);

impl Signal {
    fn notify(&self) {
        self.0.notify_waiters();
    }
}

/// Waits until `done()` holds or `timeout` passes.
async fn wait_until(signal: &Signal, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Registered before checking, so an arrival between the check and the wait
        // still wakes us.
        let notified = signal.0.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return;
        }
    }
}
