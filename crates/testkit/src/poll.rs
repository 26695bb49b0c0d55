//! Waiting for something that happens on another task: poll with a deadline, never sleep for a
//! fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` until it returns `Some`, then returns the value; panics naming `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Polls a synchronous condition until it holds; panics naming `what` after `limit`.
pub async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    eventually(limit, what, || std::future::ready(f().then_some(()))).await
}
