//! The console in Chromium against `agentid up` (docs/console.md §8): `up` prints the console
//! and its administrator; tests/browser/console.mjs signs in, creates a blueprint and an agent,
//! runs the demo story, opens the chain of the allowed tool call, disables the agent and sees
//! the next gateway call refused within 5 s. Screenshots go to target/screenshots/console/.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentid_testkit::demo::up::{ADMIN, ADMIN_PASSWORD, AGENT, PASSWORD};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_ports() -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..7)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[test]
fn console_in_chromium_from_sign_in_to_kill_switch() {
    assert!(
        PathBuf::from("/usr/bin/chromium").exists()
            && root()
                .join("tests/browser/node_modules/playwright-core")
                .exists(),
        "run scripts/node-deps.sh first"
    );
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentid"));
    cmd.current_dir(dir.path())
        .env_remove("AGENTID_HOME")
        .arg("up");
    for (flag, port) in [
        "--sts-port",
        "--gateway-port",
        "--admin-port",
        "--metrics-port",
        "--sidecar-port",
        "--mcp-port",
        "--model-port",
    ]
    .iter()
    .zip(&ports)
    {
        cmd.arg(flag).arg(port.to_string());
    }
    let mut up = Running(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // `up` prints its summary once everything listens; the reader thread hands it over.
    let stderr = up.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut summary = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            summary.push_str(&line);
            summary.push('\n');
            if line.contains("Ctrl-C stops everything") {
                let _ = tx.send(summary.clone());
            }
        }
        let _ = tx.send(summary);
    });
    let summary = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("agentid up prints its summary");
    assert!(
        summary.contains(&format!(
            "Console administrator: {ADMIN} / {ADMIN_PASSWORD}"
        )),
        "{summary}"
    );
    let console = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("web console"))
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| panic!("no console URL in:\n{summary}"));
    let base = console
        .strip_suffix("/console")
        .expect("URL ends in /console");
    let shots = root().join("target/screenshots/console");
    let _ = std::fs::remove_dir_all(&shots);
    let started = Instant::now();
    let out = Command::new("node")
        .arg(root().join("tests/browser/console.mjs"))
        .env("BASE", base)
        .env("CA_FILE", dir.path().join(".agentid/ca.pem"))
        .env("USERNAME", ADMIN)
        .env("PASSWORD", ADMIN_PASSWORD)
        .env("SHOT_DIR", &shots)
        .env("AGENTID_BIN", env!("CARGO_BIN_EXE_agentid"))
        .env("WORK_DIR", dir.path())
        .env("AGENT", AGENT)
        .env("DEMO_PASSWORD", PASSWORD)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the console story failed after {:?}:\n{stdout}\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("console story: {stdout}");
    for name in [
        "console-home",
        "console-blueprint",
        "console-chain",
        "console-refused",
    ] {
        let f = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&f)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "screenshot {} missing",
            f.display()
        );
    }
}
