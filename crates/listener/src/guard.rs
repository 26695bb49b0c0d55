//! Time bounds on a connection, whatever its protocol.
//!
//! hyper bounds the wait for each HTTP/1 request head (the header-read timeout), but not the
//! protocol sniffing before it (a connection that sends nothing, or the first bytes of the
//! HTTP/2 preface and then nothing, waits for ever) and nothing at all on HTTP/2. Since every
//! connection holds one of the listener's connection slots, a few thousand silent sockets
//! would lock every client out. [`Guard`] closes a connection that
//!
//! - has not presented its first request within the header-read timeout of being accepted
//!   (TLS handshake included), or
//! - has moved no byte in either direction for the idle timeout afterwards while no request
//!   is being handled (a handler waiting on an upstream is bounded by its own timeouts).
//!
//! The connection is first asked to shut down gracefully (in-flight responses finish) and
//! dropped if it has not within another header-read timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a connection that never presented a request was closed.
pub const NO_FIRST_REQUEST: &str = "no request within the header-read timeout";

/// The clock of one connection: when it was accepted, when bytes last moved, and whether a
/// request has arrived.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Clock>,
}

struct Clock {
    accepted: Instant,
    /// Milliseconds after `accepted` at which bytes last moved.
    last_activity_ms: AtomicU64,
    served: AtomicBool,
    /// Requests whose handler has not returned yet.
    in_flight: AtomicUsize,
}

/// Marks one request as being handled until dropped.
pub struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the connection task should do at a check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Shut down now: the reason, for the log.
    Close(&'static str),
}

impl Guard {
    pub fn new() -> Guard {
        Guard {
            inner: Arc::new(Clock {
                accepted: Instant::now(),
                last_activity_ms: AtomicU64::new(0),
                served: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.inner.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// A request head arrived (called by the service); hold the result while handling it.
    pub fn request_started(&self) -> Busy {
        self.inner.served.store(true, Ordering::Relaxed);
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.inner.clone())
    }

    /// Wraps the connection's byte stream so that reads and writes count as activity.
    pub fn watch<T>(&self, io: T) -> Watched<T> {
        Watched {
            io,
            guard: self.clone(),
        }
    }

    pub fn verdict(&self, first_request: Duration, idle: Duration) -> Verdict {
        let since_accept = self.inner.accepted.elapsed();
        if !self.inner.served.load(Ordering::Relaxed) {
            return if since_accept >= first_request {
                Verdict::Close(NO_FIRST_REQUEST)
            } else {
                Verdict::Keep
            };
        }
        if self.inner.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Keep;
        }
        let last = Duration::from_millis(self.inner.last_activity_ms.load(Ordering::Relaxed));
        if since_accept.saturating_sub(last) >= idle {
            Verdict::Close("idle longer than the idle timeout")
        } else {
            Verdict::Keep
        }
    }

    /// How long to sleep before the next check.
    pub fn check_interval(first_request: Duration, idle: Duration) -> Duration {
        (first_request.min(idle) / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

/// A byte stream whose reads and writes reset its [`Guard`]'s idle clock.
pub struct Watched<T> {
    io: T,
    guard: Guard,
}

impl<T> Watched<T> {
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.guard.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.guard.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.guard.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_then_idle() {
        let g = Guard::new();
        assert_eq!(
            g.verdict(Duration::from_secs(30), Duration::from_secs(600)),
            Verdict::Keep
        );
        assert!(matches!(
            g.verdict(Duration::ZERO, Duration::from_secs(600)),
            Verdict::Close(_)
        ));
        let busy = g.request_started();
        assert_eq!(
            g.verdict(Duration::ZERO, Duration::from_secs(600)),
            Verdict::Keep
        );
        assert_eq!(g.verdict(Duration::ZERO, Duration::ZERO), Verdict::Keep);
        drop(busy);
        assert!(matches!(
            g.verdict(Duration::ZERO, Duration::ZERO),
            Verdict::Close(_)
        ));
    }
}
