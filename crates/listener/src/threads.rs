//! Serving per core (docs/performance.md §6.1): N threads, each a current-thread tokio runtime
//! that accepts from its own copy of the listening socket and runs the connections it accepted
//! to their end — nginx's shape of one worker per core. A connection's task, the tasks it
//! spawns and (for the gateway) the pooled upstream connection it uses stay on one thread:
//! no work-stealing hand-off between workers, no cross-thread wake-up per request.
//!
//! Why copies of one socket and not `SO_REUSEPORT` sockets: with the connection cap shared
//! across threads, a thread holding the last free slot must be able to accept whichever
//! connection is waiting. With one queue per thread (reuseport), the slot's thread may wait on
//! an empty queue while the waiting client sits in another thread's queue, until some other
//! connection ends. Copies of one socket share the kernel's one accept queue; every thread
//! waits on it and the first free one takes the connection (the least busy, in practice).
//!
//! The threads outlive the drain: accepting stops when it begins, the accepted connections
//! finish on their threads, and each runtime ends only when the owner says so (after the
//! drain has finished or passed its deadline) or is dropped.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{oneshot, watch};

thread_local! {
    static SERVING_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the serving thread running the caller, `None` elsewhere (the control
/// runtime, tests): per-thread resources (the gateway's upstream pools) are picked with it.
pub fn serving_thread() -> Option<usize> {
    SERVING_THREAD.with(Cell::get)
}

/// How many serving threads to run when nothing says: one per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Running serving threads; [`Self::finished`] resolves when all have ended.
pub struct ServingThreads {
    ended: Vec<oneshot::Receiver<()>>,
}

/// Where an accepted connection runs. The thread that wins the race to accept is usually the
/// least busy, but a burst of connections (a client pool opening 32 at once) can land on one
/// thread before the others wake; a connection accepted by a thread with more open connections
/// than another is handed to the least loaded thread's runtime instead (a cross-thread move once
/// per connection, never per request).
#[derive(Clone, Debug)]
pub struct Placement {
    handles: Arc<[tokio::runtime::Handle]>,
    open: Arc<[AtomicUsize]>,
}

/// A connection counted on its thread until dropped.
#[derive(Debug)]
pub struct Placed {
    open: Arc<[AtomicUsize]>,
    thread: usize,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.open[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Placement {
    /// The thread a connection accepted by thread `me` should run on: `me`, unless another
    /// has fewer open connections (then the least loaded); counted there until dropped.
    pub fn place(&self, me: usize) -> (usize, Placed) {
        let me = me.min(self.open.len() - 1);
        let mut target = me;
        let mut least = self.open[me].load(Ordering::Relaxed);
        for (i, n) in self.open.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n < least {
                (target, least) = (i, n);
            }
        }
        self.open[target].fetch_add(1, Ordering::Relaxed);
        let placed = Placed {
            open: self.open.clone(),
            thread: target,
        };
        (target, placed)
    }

    /// The runtime of serving thread `i`.
    pub fn handle(&self, i: usize) -> &tokio::runtime::Handle {
        &self.handles[i.min(self.handles.len() - 1)]
    }

    /// Open connections per thread.
    pub fn open(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

impl ServingThreads {
    /// Starts `count` threads named `<name>-<i>`. Thread `i` runs `serve(i, placement)` on its own
    /// current-thread runtime (I/O and timers enabled), then keeps the runtime — and with it
    /// every task the future spawned, such as accepted connections — running until `stop`
    /// turns `true` or its sender is dropped. `stop` also ends a `serve` still running.
    pub fn start<F, Fut>(
        count: usize,
        name: &str,
        stop: watch::Receiver<bool>,
        serve: F,
    ) -> io::Result<ServingThreads>
    where
        F: Fn(usize, Placement) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let serve = Arc::new(serve);
        let count = count.max(1);
        let runtimes = (0..count)
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<io::Result<Vec<_>>>()?;
        let placement = Placement {
            handles: runtimes.iter().map(|r| r.handle().clone()).collect(),
            open: (0..count).map(|_| AtomicUsize::new(0)).collect(),
        };
        let mut ended = Vec::with_capacity(count);
        for (i, runtime) in runtimes.into_iter().enumerate() {
            let (done, end) = oneshot::channel();
            let (serve, mut stop) = (serve.clone(), stop.clone());
            let placement = placement.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    SERVING_THREAD.with(|t| t.set(Some(i)));
                    runtime.block_on(async move {
                        let until_stopped = async {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        tokio::pin!(until_stopped);
                        tokio::select! {
                            _ = serve(i, placement) => until_stopped.await,
                            _ = &mut until_stopped => {}
                        }
                    });
                    // Whatever is left (connections past the drain's deadline) is cut off;
                    // blocking work still running is not waited for.
                    runtime.shutdown_background();
                    let _ = done.send(());
                })?;
            ended.push(end);
        }
        Ok(ServingThreads { ended })
    }

    /// How many threads were started.
    pub fn count(&self) -> usize {
        self.ended.len()
    }

    /// Resolves once every thread has ended (after `stop`).
    pub async fn finished(self) {
        for end in self.ended {
            let _ = end.await;
        }
    }
}

/// Copies of one listening socket, one per serving thread, each to be registered with the
/// thread's own runtime ([`tokio::net::TcpListener::from_std`] inside the thread).
pub fn socket_copies(listener: &std::net::TcpListener, count: usize) -> io::Result<Vec<Shared>> {
    listener.set_nonblocking(true)?;
    (0..count.max(1))
        .map(|_| listener.try_clone().map(Shared))
        .collect()
}

/// One thread's copy of a listening socket (see [`socket_copies`]).
#[derive(Debug)]
pub struct Shared(std::net::TcpListener);

impl Shared {
    /// Registers the copy with the calling thread's runtime.
    pub fn register(self) -> io::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::from_std(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn each_thread_knows_its_index_and_ends_on_stop() {
        let (stop, rx) = watch::channel(false);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let threads = ServingThreads::start(3, "t", rx, move |i, _| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send((i, serving_thread()));
                std::future::pending::<()>().await;
            }
        })
        .unwrap();
        assert_eq!(threads.count(), 3);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(seen.recv().await.unwrap());
        }
        got.sort();
        assert_eq!(got, vec![(0, Some(0)), (1, Some(1)), (2, Some(2))]);
        assert_eq!(serving_thread(), None);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), threads.finished())
            .await
            .expect("every thread ends on stop");
    }

    #[test]
    fn connections_go_to_the_least_loaded_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let p = Placement {
            handles: vec![rt.handle().clone(); 2].into(),
            open: (0..2).map(|_| AtomicUsize::new(0)).collect(),
        };
        // A burst accepted by thread 0 alternates between the two threads.
        let placed: Vec<_> = (0..4).map(|_| p.place(0)).collect();
        let targets: Vec<usize> = placed.iter().map(|(t, _)| *t).collect();
        assert_eq!(targets, vec![0, 1, 0, 1]);
        assert_eq!(p.open(), vec![2, 2]);
        drop(placed);
        assert_eq!(p.open(), vec![0, 0]);
    }

    #[tokio::test]
    async fn dropping_the_stop_sender_ends_the_threads() {
        let (stop, rx) = watch::channel(false);
        let threads = ServingThreads::start(2, "t", rx, |_, _| async {}).unwrap();
        drop(stop);
        tokio::time::timeout(Duration::from_secs(10), threads.finished())
            .await
            .expect("the threads end when their owner is gone");
    }
}
