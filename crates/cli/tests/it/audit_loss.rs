//! Loss (issue 15, docs/audit.md §6.3): a real `agentid gateway` process writes 1,000 decision
//! events while the STS is unreachable, is killed with SIGKILL, and is started again once the STS
//! is back: all 1,000 arrive, each stored once (counted by eventId in the STS's database). Then a
//! lost commit is simulated (the spool's committed position reset): the replayed batch is
//! deduplicated by the STS and still nothing is stored twice.

use crate::process_support::{Proc, eventually, free_port};
use agentid_testkit::{Db, TestSts, both_backends};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const GW: &str = "6f1c2b8e-3d4a-4f5b-9c6d-7e8f9a0b1c2d";
const GW_SECRET: &str = "gateway-secret-for-tests";
const EVENTS: usize = 1000;

fn tenant() -> String {
    agentid_testkit::demo::DEMO_TENANT
        .replacen(
            "applications:\n",
            &format!("applications:\n  - name: gw\n    appId: {GW}\n    secrets: [{{value: {GW_SECRET}}}]\n"),
            1,
        )
        .replace(
            "\nappRoleAssignments:",
            "\nappRoleAssignments:\n  - principal: gw\n    resource: graph\n    role: AuditEvents.Write",
        )
}

/// A TCP front for the STS that refuses every connection while `up` is false: the STS "down".
async fn switch(target: std::net::SocketAddr) -> (u16, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !flag.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, up)
}

/// (rows, distinct eventIds) in the STS's database.
async fn stored(sts: &TestSts) -> (i64, i64) {
    let rows = sts.count("gateway_events").await;
    let events = sts
        .running
        .state
        .store
        .gateway_events(&agentid_directory::trail::GatewayEventQuery {
            tenant_id: sts.tenant_id.clone(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: std::collections::HashSet<String> = events.into_iter().map(|e| e.event_id).collect();
    (rows, ids.len() as i64)
}

fn spool_pending(dir: &std::path::Path) -> u64 {
    agentid_gateway::audit::spool::Spool::open(dir, u64::MAX)
        .and_then(|s| s.pending())
        .unwrap_or(0)
}

both_backends!(
    killed_gateway_loses_nothing_and_writes_nothing_twice,
    |db: Db| async move {
        let sts = TestSts::start(db, &tenant()).await;
        let sts_addr: std::net::SocketAddr =
            sts.base().trim_start_matches("https://").parse().unwrap();
        let (front, up) = switch(sts_addr).await;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let [bind, admin] = [free_port(), free_port()];
        let config = dir.path().join("gateway.yaml");
        let base = format!("https://127.0.0.1:{front}");
        std::fs::write(
        &config,
        format!(
            "config:\n  adminAddr: 127.0.0.1:{admin}\n  statsAddr: \"off\"\n  readinessAddr: \"off\"\n\
             agentid:\n  audit:\n    stdout: false\n    ship:\n      tokenEndpoint: {base}/{tid}/oauth2/v2.0/token\n      \
             clientId: {GW}\n      clientSecret: {GW_SECRET}\n      url: {base}/agentid/v1/auditEvents\n      \
             root: {ca}\n      spoolDir: {spool}\n      flushInterval: 100ms\n\
             binds:\n- port: {bind}\n  listeners:\n  - routes:\n    - name: locked\n      \
             backends: [{{host: \"127.0.0.1:9\"}}]\n      policies:\n        authorization:\n          rules: [\"false\"]\n",
            tid = sts.tenant_id,
            ca = sts.ca_file().display(),
            spool = spool.display(),
        ),
    )
    .unwrap();
        let args = [
            "gateway".to_string(),
            "-f".into(),
            config.display().to_string(),
        ];
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let health = format!("http://127.0.0.1:{admin}/healthz");
        let mut gateway = Proc::spawn("agentid gateway", &args, &[]);
        eventually("the gateway to listen", Duration::from_secs(60), || async {
            http.get(&health).send().await.ok().map(|_| ())
        })
        .await;

        // 1,000 refused requests: 1,000 decision events, none of which can reach the STS.
        let url = format!("http://127.0.0.1:{bind}/x");
        for _ in 0..EVENTS / 50 {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..50 {
                let (http, url) = (http.clone(), url.clone());
                calls.spawn(async move { http.get(&url).send().await.map(|r| r.status()) });
            }
            while let Some(r) = calls.join_next().await {
                assert_eq!(r.unwrap().unwrap(), 403);
            }
        }
        eventually(
            "1,000 events in the spool",
            Duration::from_secs(30),
            || async { (spool_pending(&spool) >= EVENTS as u64).then_some(()) },
        )
        .await;
        gateway.signal("KILL");
        gateway.wait_exit(Duration::from_secs(10));
        assert_eq!(stored(&sts).await, (0, 0), "the STS was unreachable");

        // Both back: the new process replays the spool.
        up.store(true, Ordering::SeqCst);
        let mut gateway = Proc::spawn("agentid gateway", &args, &[]);
        eventually(
            "all 1,000 events stored",
            Duration::from_secs(60),
            || async { (stored(&sts).await.0 >= EVENTS as i64).then_some(()) },
        )
        .await;
        eventually(
            "the spool to be shipped",
            Duration::from_secs(30),
            || async { (spool_pending(&spool) == 0).then_some(()) },
        )
        .await;
        assert_eq!(
            stored(&sts).await,
            (EVENTS as i64, EVENTS as i64),
            "{}",
            gateway.output()
        );

        // A commit lost in a crash: the spool replays what the STS already has.
        gateway.signal("KILL");
        gateway.wait_exit(Duration::from_secs(10));
        std::fs::write(spool.join("committed"), "0 0\n").unwrap();
        let replay = spool_pending(&spool);
        assert!(
            replay > 0,
            "some shipped events are still in the spool to replay"
        );
        let mut gateway = Proc::spawn("agentid gateway", &args, &[]);
        eventually(
            "the replay to be shipped",
            Duration::from_secs(60),
            || async { (spool_pending(&spool) == 0).then_some(()) },
        )
        .await;
        assert_eq!(
            stored(&sts).await,
            (EVENTS as i64, EVENTS as i64),
            "replayed {replay} events, stored none twice"
        );
        gateway.signal("TERM");
        gateway.wait_exit(Duration::from_secs(20));
        sts.stop().await;
    }
);
