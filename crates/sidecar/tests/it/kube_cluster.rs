//! Real service-account tokens through the whole chain (issue 12 item 2; docs/sidecar.md §9.3–§9.4,
//! docs/sts.md §6.3.3): the testkit's real kube-apiserver v1.20.2 (no emulation here) mints a
//! TokenRequest token for a ServiceAccount with audience `api://AzureADTokenExchange`, written
//! where a projected volume puts it; the real sidecar (in-process) reads it and gets its T1 and
//! T2 from an in-process STS that trusts the cluster's issuer in one of two ways:
//!
//! - a stored JWKS, exported with `kubectl get --raw /openid/v1/jwks` (what `deploy/` does);
//! - in-cluster discovery against the API server itself, over the cluster's own CA (`caFile`).
//!
//! The rotation test restarts the API server with a new signing key (a bed of its own).

use crate::support::*;
use agentid_testkit::{Db, KubeCluster, TestSts};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const AUDIENCE: &str = "api://AzureADTokenExchange";
const SERVICE_ACCOUNT: &str = "blog-agent";

#[derive(Clone, Copy, Debug)]
enum Trust {
    StoredJwks,
    Discovery,
}

/// A namespace with the workload's ServiceAccount, an STS federated with the cluster's issuer,
/// and the projected token file.
struct Chain {
    sts: TestSts,
    token_file: PathBuf,
    ns: String,
}

fn kubectl_ok(cluster: &KubeCluster, args: &[&str]) -> Vec<u8> {
    let out = cluster.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn service_account(cluster: &KubeCluster, prefix: &str) -> String {
    let ns = cluster.namespace(prefix).await;
    kubectl_ok(
        cluster,
        &["create", "serviceaccount", SERVICE_ACCOUNT, "-n", &ns],
    );
    ns
}

async fn chain(cluster: &KubeCluster, ns: &str, trust: Trust) -> Chain {
    let dir = TestSts::prepare_dir();
    let issuer = cluster.issuer().to_string();
    let trust_entry = match trust {
        Trust::StoredJwks => {
            // Exactly the README's export.
            let jwks = kubectl_ok(cluster, &["get", "--raw", "/openid/v1/jwks"]);
            std::fs::write(dir.path().join("cluster-jwks.json"), jwks).unwrap();
            format!("{{issuer: '{issuer}', jwks: {{file: ./cluster-jwks.json}}}}")
        }
        Trust::Discovery => format!(
            "{{issuer: '{issuer}', discovery: true, caFile: '{}'}}",
            cluster.ca_path().display()
        ),
    };
    let federation = Federation {
        issuer,
        subject: format!("system:serviceaccount:{ns}:{SERVICE_ACCOUNT}"),
        trust: trust_entry,
    };
    let token_file = dir.path().join("azure-identity-token");
    cluster
        .write_token_file(&token_file, ns, SERVICE_ACCOUNT, AUDIENCE)
        .await;
    let sts = TestSts::start_in(
        dir,
        Db::Sqlite,
        &tenant_federated(Some(&federation)),
        Default::default(),
    )
    .await;
    Chain {
        sts,
        token_file,
        ns: ns.to_string(),
    }
}

/// A sidecar configured only with the variables the Azure workload identity webhook injects.
async fn sidecar(chain: &Chain) -> TestSidecar {
    let sts = &chain.sts;
    let env = [
        ("AZURE_CLIENT_ID", FIC_BP.to_string()),
        ("AZURE_TENANT_ID", sts.tenant_id.clone()),
        ("AZURE_AUTHORITY_HOST", sts.base().to_string()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            chain.token_file.display().to_string(),
        ),
        ("DownstreamApis__graph__Scopes__0", GRAPH_DEFAULT.into()),
        ("DownstreamApis__graph__RequestAppToken", "true".into()),
        ("Sidecar__AllowedAgentIdentities__0", FIC_AGENT.into()),
        ("Sidecar__ListenUrl", "http://127.0.0.1:0".into()),
        ("Sidecar__HealthListenUrl", "off".into()),
        (
            "Sidecar__ExtraCaBundlePath",
            sts.ca_file().display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    TestSidecar::start(env).await
}

/// The agent's T2 through the sidecar, and the T1 the STS issued on the way for the
/// ServiceAccount token: both audited with the token's issuer and subject.
async fn assert_t1_and_t2(cluster: &KubeCluster, chain: &Chain) {
    let sc = sidecar(chain).await;
    let r = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={FIC_AGENT}"
        ))
        .await;
    let c = r.claims();
    assert_eq!(
        (
            claim(&c, "appid"),
            claim(&c, "xms_par_app_azp"),
            claim(&c, "tid")
        ),
        (FIC_AGENT, FIC_BP, chain.sts.tenant_id.as_str()),
        "the T2 is the agent's, on behalf of the federated blueprint"
    );
    let events = chain.sts.token_events().await;
    let subject = format!("system:serviceaccount:{}:{SERVICE_ACCOUNT}", chain.ns);
    let t1 = events
        .iter()
        .find(|e| {
            e.result == "issued"
                && e.credential_type.as_deref() == Some("federated")
                && e.client_id.as_deref() == Some(FIC_BP)
        })
        .unwrap_or_else(|| panic!("no T1 issued for the ServiceAccount token: {events:#?}"));
    assert_eq!(t1.federated_issuer.as_deref(), Some(cluster.issuer()));
    assert_eq!(t1.federated_subject.as_deref(), Some(subject.as_str()));
    let t2 = events
        .iter()
        .find(|e| e.result == "issued" && e.credential_type.as_deref() == Some("t1"))
        .unwrap_or_else(|| panic!("no T2 issued with the T1: {events:#?}"));
    assert_eq!(t2.agent_id.as_deref(), Some(FIC_AGENT));
    assert_eq!(t2.token_id.as_deref(), c["uti"].as_str());
    let sa_token = std::fs::read_to_string(&chain.token_file).unwrap();
    logs::assert_no_secrets(&[&sa_token, &r.token()]);
}

/// A client_credentials request for a Graph app token with the ServiceAccount token as the
/// blueprint's assertion, straight to the STS: (status, AADSTS code).
async fn redeem(chain: &Chain, assertion: &str) -> (u16, Option<i64>) {
    let (status, body) = chain
        .sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", FIC_BP),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", GRAPH_DEFAULT),
        ])
        .await;
    (status, body["error_codes"][0].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_request_token_gets_t1_and_t2_through_a_stored_jwks() {
    let cluster = KubeCluster::shared().await;
    let ns = service_account(cluster, "stored").await;
    let chain = chain(cluster, &ns, Trust::StoredJwks).await;
    assert_t1_and_t2(cluster, &chain).await;
    chain.sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_request_token_gets_t1_and_t2_through_in_cluster_discovery() {
    let cluster = KubeCluster::shared().await;
    let ns = service_account(cluster, "discovery").await;
    let chain = chain(cluster, &ns, Trust::Discovery).await;
    assert_t1_and_t2(cluster, &chain).await;
    // A token of another ServiceAccount of the same cluster is not this blueprint's credential.
    kubectl_ok(
        cluster,
        &["create", "serviceaccount", "intruder", "-n", &ns],
    );
    let other = cluster.token_request(&ns, "intruder", AUDIENCE, 600).await;
    assert_eq!(redeem(&chain, &other).await, (401, Some(700213)));
    // Nor one for another audience.
    let other = cluster
        .token_request(&ns, SERVICE_ACCOUNT, "api://someone-else", 600)
        .await;
    assert_eq!(redeem(&chain, &other).await, (401, Some(70021)));
    chain.sts.stop().await;
}

/// The cluster rotates its signing key (the API server restarts signing with a new key and
/// still publishing the old one). Discovery picks the new key up by itself (an unknown `kid`
/// refetches the JWKS, at most every 30 s); a stored JWKS does not know the new key, and
/// tokens signed with it are refused with AADSTS7000272 until the JWKS is exported again
/// (README, "Stored JWKS"; docs/sts.md §6.3.3 step 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_signing_key_rotation_discovery_follows_and_a_stored_jwks_refuses() {
    let mut cluster = KubeCluster::start().await.expect("a bed of its own");
    let ns = service_account(&cluster, "rotate").await;
    let stored = chain(&cluster, &ns, Trust::StoredJwks).await;
    let discovered = chain(&cluster, &ns, Trust::Discovery).await;
    assert_t1_and_t2(&cluster, &stored).await;
    assert_t1_and_t2(&cluster, &discovered).await;
    let old_token = std::fs::read_to_string(&stored.token_file).unwrap();

    cluster.rotate_signing_key().await.expect("rotation");
    let rotated = Instant::now();
    for chain in [&stored, &discovered] {
        cluster
            .write_token_file(&chain.token_file, &ns, SERVICE_ACCOUNT, AUDIENCE)
            .await;
    }
    let new_token = std::fs::read_to_string(&stored.token_file).unwrap();
    let kid = |t: &str| {
        agentid_testkit::header(t)["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(kid(&new_token), kid(&old_token), "the new key signs");

    // Stored JWKS: the old key still works, the new one is refused as documented.
    assert_eq!(redeem(&stored, &old_token).await.0, 200);
    assert_eq!(redeem(&stored, &new_token).await, (401, Some(7000272)));
    let sc = sidecar(&stored).await;
    let r = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={FIC_AGENT}"
        ))
        .await;
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("AADSTS7000272"), "{}", r.text());

    // Discovery: no action; the JWKS is refetched once the unknown-kid floor has passed.
    let new_token = std::fs::read_to_string(&discovered.token_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut refused = 0;
    loop {
        match redeem(&discovered, &new_token).await {
            (200, _) => break,
            (401, Some(7000272)) if Instant::now() < deadline => refused += 1,
            other => panic!("discovery did not pick up the new key: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "discovery accepted the new key {} ms after the API server was ready with it \
         ({refused} refusals before, unknown-kid refetch floor 30 s)",
        rotated.elapsed().as_millis()
    );
    assert_t1_and_t2(&cluster, &discovered).await;
    assert_eq!(redeem(&discovered, &old_token).await.0, 200);
    stored.sts.stop().await;
    discovered.sts.stop().await;
}
