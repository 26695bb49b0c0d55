//! Draining a server on shutdown (docs/architecture.md §7), shared by the STS, the gateway and
//! the sidecar: when the drain begins (SIGTERM), every accept loop stops — the listening socket
//! closes, so new connections are refused — each open connection finishes the requests it has
//! in flight and closes, readiness reports "draining", and the process waits for the
//! connections up to a deadline before it exits.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

use crate::ConnectionSlots;

/// One server's drain. Cheap to clone; every clone is the same drain.
#[derive(Clone, Debug)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    draining: watch::Sender<bool>,
    open: AtomicUsize,
    idle: Notify,
}

/// A connection the drain waits for; dropping it tells the drain the connection is gone.
#[derive(Debug)]
pub struct OpenConnection(Arc<Inner>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished.
    Finished,
    /// The deadline passed with this many connections still open (they are cut off when the
    /// process exits).
    DeadlinePassed { open: usize },
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            inner: Arc::new(Inner {
                draining: watch::channel(false).0,
                open: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// Begins the drain (idempotent).
    pub fn begin(&self) {
        self.inner.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// Turns `true` when the drain begins: the stop signal of [`crate::serve_connection`].
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.inner.draining.subscribe()
    }

    /// Resolves once the drain has begun.
    pub async fn begun(&self) {
        let mut rx = self.signal();
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Counts a connection until the returned guard is dropped.
    pub fn track(&self) -> OpenConnection {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        OpenConnection(self.inner.clone())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Waits until every tracked connection has closed, or `deadline` has passed.
    pub async fn finished(&self, deadline: Duration) -> Drained {
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.open() == 0 {
                    return;
                }
                idle.await;
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(()) => Drained::Finished,
            Err(_) => Drained::DeadlinePassed { open: self.open() },
        }
    }

    /// [`Self::begin`], then [`Self::finished`], logging the outcome for `server`.
    pub async fn run(&self, server: &str, deadline: Duration) -> Drained {
        self.begin();
        let open = self.open();
        tracing::info!(
            server,
            open,
            deadline_s = deadline.as_secs_f64(),
            "draining: no new connections, finishing in-flight requests"
        );
        let started = std::time::Instant::now();
        let drained = self.finished(deadline).await;
        match drained {
            Drained::Finished => tracing::info!(
                server,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "drained"
            ),
            Drained::DeadlinePassed { open } => tracing::warn!(
                server,
                open,
                "drain deadline passed; the remaining connections are cut off"
            ),
        }
        drained
    }
}

/// A listening socket the accept loop can take connections from.
pub trait Acceptor: Send + 'static {
    type Stream: Send + 'static;
    type Peer: Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Peer)>> + Send;
}

impl Acceptor for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Peer = std::net::SocketAddr;
    async fn accept(&self) -> io::Result<(Self::Stream, Self::Peer)> {
        tokio::net::TcpListener::accept(self).await
    }
}

impl Acceptor for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Peer = ();
    async fn accept(&self) -> io::Result<(Self::Stream, Self::Peer)> {
        tokio::net::UnixListener::accept(self)
            .await
            .map(|(s, _)| (s, ()))
    }
}

/// The accept loop of every agentid listener: takes a connection slot (the cap), accepts, and
/// runs `serve` for the connection in a task of its own that holds the slot and a place in the
/// drain's count. Returns when the drain begins, dropping `acceptor`, which closes the
/// listening socket.
pub async fn accept_until_drain<A, F, Fut>(
    acceptor: A,
    slots: ConnectionSlots,
    drain: Drain,
    mut serve: F,
) where
    A: Acceptor,
    F: FnMut(A::Stream, A::Peer) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let slot = tokio::select! {
            biased;
            _ = drain.begun() => break,
            s = slots.acquire() => match s {
                Some(s) => s,
                None => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = drain.begun() => break,
            r = acceptor.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let tracked = drain.track();
        let connection = serve(stream, peer);
        tokio::spawn(async move {
            let _slot = slot;
            let _tracked = tracked;
            connection.await;
        });
    }
    drop(acceptor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionLimits;

    #[tokio::test]
    async fn finished_waits_for_tracked_connections_up_to_the_deadline() {
        let drain = Drain::new();
        assert_eq!(drain.finished(Duration::ZERO).await, Drained::Finished);
        let a = drain.track();
        let b = drain.track();
        assert_eq!(drain.open(), 2);
        assert_eq!(
            drain.finished(Duration::from_millis(50)).await,
            Drained::DeadlinePassed { open: 2 }
        );
        let d = drain.clone();
        let waiting = tokio::spawn(async move { d.finished(Duration::from_secs(30)).await });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(b);
        assert_eq!(waiting.await.unwrap(), Drained::Finished);
    }

    #[tokio::test]
    async fn the_accept_loop_stops_and_closes_the_socket_when_the_drain_begins() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let drain = Drain::new();
        let slots = ConnectionSlots::new(&ConnectionLimits::default());
        let (release, released) = tokio::sync::watch::channel(false);
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let accepting = tokio::spawn(accept_until_drain(
            listener,
            slots,
            drain.clone(),
            move |_stream, _peer| {
                let (counter, mut released) = (counter.clone(), released.clone());
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = released.wait_for(|r| *r).await;
                }
            },
        ));
        let _held = tokio::net::TcpStream::connect(addr).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while served.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "not accepted");
            tokio::task::yield_now().await;
        }
        assert!(!drain.is_draining());
        drain.begin();
        accepting.await.unwrap();
        assert!(drain.is_draining());
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "new connections are refused while draining"
        );
        assert_eq!(
            drain.finished(Duration::from_millis(50)).await,
            Drained::DeadlinePassed { open: 1 },
            "the accepted connection is still being served"
        );
        release.send_replace(true);
        assert_eq!(
            drain.finished(Duration::from_secs(10)).await,
            Drained::Finished
        );
    }
}
