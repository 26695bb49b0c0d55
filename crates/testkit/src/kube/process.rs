//! Child processes of the test bed that cannot outlive the test process.
//!
//! Three layers, because a test binary can end in three ways:
//! - normally (libtest calls `exit`): an `atexit` handler kills every live child and removes the
//!   bed's directories;
//! - killed (SIGKILL, a panic that aborts): every child is started with a parent-death signal
//!   (`PR_SET_PDEATHSIG` = SIGKILL). The kernel sends it when the *thread* that forked the child
//!   ends, so children are forked by one spawner thread that lives as long as the process;
//! - the directories such a death leaves behind are removed by the next bed that starts
//!   ([`sweep_stale_dirs`]): each is named after the pid that made it.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// pids of running children and directories to remove at exit.
struct Live {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    pids: Vec::new(),
    dirs: Vec::new(),
});

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("kube-bed-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // The channel's sender lives in a static, so this loop never ends: the thread
                // (and with it the parent-death signal of every child) lasts as long as the process.
            })
            .expect("spawn the kube bed's spawner thread");
        // SAFETY: registering a plain `extern "C" fn` with no arguments.
        unsafe { libc::atexit(cleanup_at_exit) };
        Mutex::new(tx)
    })
}

extern "C" fn cleanup_at_exit() {
    let live = match LIVE.lock() {
        Ok(live) => live,
        Err(poisoned) => poisoned.into_inner(),
    };
    for pid in &live.pids {
        // SAFETY: kill(2) on a pid this process started and has not reaped.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    for dir in &live.dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts `command` so that it dies with the test process.
pub(crate) fn spawn(mut command: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody will send the signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("kube bed spawner lock poisoned"))?
        .send((command, tx))
        .map_err(|_| io::Error::other("kube bed spawner thread is gone"))?;
    let child = rx
        .recv()
        .map_err(|_| io::Error::other("kube bed spawner thread is gone"))??;
    lock_live().pids.push(child.id());
    Ok(child)
}

fn lock_live() -> std::sync::MutexGuard<'static, Live> {
    match LIVE.lock() {
        Ok(live) => live,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Stops a child: SIGTERM, then SIGKILL if it has not exited within `grace`.
pub(crate) fn stop(child: &mut Child, grace: Duration) {
    let pid = child.id();
    if grace > Duration::ZERO {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lock_live().pids.retain(|p| *p != pid);
}

/// Registers a directory to remove at exit (for beds that are never dropped).
pub(crate) fn remove_at_exit(dir: &Path) {
    lock_live().dirs.push(dir.to_path_buf());
}

pub(crate) fn forget_dir(dir: &Path) {
    lock_live().dirs.retain(|d| d != dir);
}

/// Where beds keep their files: `$TMPDIR/agentid-kube-bed/<pid>-<n>`.
pub(crate) fn beds_root() -> PathBuf {
    std::env::temp_dir().join("agentid-kube-bed")
}

/// Removes the directories of beds whose test process is gone.
pub fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(beds_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
