//! Workload identity (docs/sidecar.md §9.3–§9.4, §12.4, §14; issue: "configured only with the
//! environment variables of a ConfigMap written for Microsoft's sidecar"): the blueprint
//! authenticates with a projected Kubernetes service-account token, written by the testkit's
//! issuer emulator, that the STS trusts through a federated credential.

use crate::support::relay::leg;
use crate::support::*;
use agentid_sidecar::ConfigSources;
use agentid_sidecar::clock::ManualClock;
use agentid_testkit::{Db, KubeIssuer, TestSts};
use std::path::Path;
use std::sync::Arc;

async fn cluster() -> (KubeIssuer, TestSts, std::path::PathBuf) {
    let kube = KubeIssuer::start().await;
    let dir = TestSts::prepare_dir();
    let token_file = dir.path().join("azure-identity-token");
    kube.write_token_file(
        &token_file,
        "agents",
        "blog-agent",
        "api://AzureADTokenExchange",
    );
    let sts = TestSts::start_in(dir, Db::Sqlite, &tenant(Some(&kube)), Default::default()).await;
    (kube, sts, token_file)
}

async fn start(sources: ConfigSources) -> TestSidecar {
    logs::init();
    let config = agentid_sidecar::config::load(&sources).unwrap_or_else(|e| panic!("{e}"));
    let clock = ManualClock::new();
    let running = agentid_sidecar::start_with_clock(config, Arc::new(clock.clone()))
        .await
        .unwrap();
    TestSidecar {
        url: running.url(),
        running,
        clock,
        http: http_client(),
        env: sources.env,
    }
}

fn write(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_configmap_performs_the_full_agent_on_behalf_of() {
    let (_kube, sts, token_file) = cluster().await;
    // Exactly the keys of the guide's ConfigMap; the private CA through the standard variable.
    let configmap = [
        ("AzureAd__Instance", format!("{}/", sts.base())),
        ("AzureAd__TenantId", sts.tenant_id.clone()),
        ("AzureAd__ClientId", FIC_BP.to_string()),
        (
            "AzureAd__ClientCredentials__0__SourceType",
            "SignedAssertionFilePath".into(),
        ),
        (
            "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath",
            token_file.display().to_string(),
        ),
        (
            "DownstreamApis__graph__BaseUrl",
            "https://graph.microsoft.com/v1.0/".into(),
        ),
        ("DownstreamApis__graph__Scopes__0", GRAPH_DEFAULT.into()),
        ("DownstreamApis__graph__RequestAppToken", "false".into()),
        ("ASPNETCORE_ENVIRONMENT", "Production".into()),
        ("ASPNETCORE_URLS", "http://127.0.0.1:0".into()),
        ("SSL_CERT_FILE", sts.ca_file().display().to_string()),
    ];
    let mut sources = ConfigSources::from_vars(&configmap);
    sources.health_listen = Some("off".into());
    let sc = start(sources).await;
    let tc = user_token_for(&sts, FIC_BP, "alice@contoso.test", "correct-horse-battery").await;
    let r = sc
        .get_as(&format!("/AuthorizationHeader/graph?optionsOverride.RequestAppToken=false&AgentIdentity={FIC_AGENT}"), &tc)
        .await;
    let c = r.claims();
    assert_eq!(
        (
            claim(&c, "appid"),
            claim(&c, "idtyp"),
            claim(&c, "upn"),
            claim(&c, "xms_par_app_azp")
        ),
        (FIC_AGENT, "user", "alice@contoso.test", FIC_BP)
    );
    let sa_token = std::fs::read_to_string(&token_file).unwrap();
    logs::assert_no_secrets(&[&sa_token, &tc, &r.token()]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_workload_identity_webhook_variables_alone() {
    let (_kube, sts, token_file) = cluster().await;
    let env = [
        ("AZURE_CLIENT_ID", FIC_BP.to_string()),
        ("AZURE_TENANT_ID", sts.tenant_id.clone()),
        ("AZURE_AUTHORITY_HOST", sts.base().to_string()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
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
    ];
    let sc = start(ConfigSources::from_vars(&env)).await;
    let c = sc
        .get("/AuthorizationHeaderUnauthenticated/graph")
        .await
        .claims();
    assert_eq!((claim(&c, "appid"), claim(&c, "appidacr")), (FIC_BP, "2"));
    let c = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={FIC_AGENT}"
        ))
        .await
        .claims();
    assert_eq!(
        (claim(&c, "appid"), claim(&c, "xms_par_app_azp")),
        (FIC_AGENT, FIC_BP)
    );
    sts.stop().await;
}

fn file_env(sts: &TestSts, relay: &Relay, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = base_env(sts, &relay.url);
    apply(
        &mut env,
        &[
            ("AzureAd__ClientId", Some(FIC_BP)),
            (
                "AzureAd__ClientCredentials__0__SourceType",
                Some("SignedAssertionFilePath"),
            ),
            ("AzureAd__ClientCredentials__0__ClientSecret", None),
            ("Sidecar__AllowInsecureAuthority", Some("true")),
            (
                "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated",
                Some("true"),
            ),
        ],
    );
    for (k, v) in extra {
        apply(&mut env, &[(k, Some(v.as_str()))]);
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_reread_as_kubelet_rotates_it() {
    // J8
    let (kube, sts, token_file) = cluster().await;
    let relay = Relay::for_sts(&sts).await;
    let env = file_env(
        &sts,
        &relay,
        &[(
            "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath",
            token_file.display().to_string(),
        )],
    );
    let sc = TestSidecar::start(env).await;
    let path = "/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.AcquireTokenOptions.ForceRefresh=true";
    let first = std::fs::read_to_string(&token_file).unwrap();
    sc.get(path).await.token();
    // kubelet writes a new token; within 5 min the cached content is still used.
    let rotated = kube.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
    write(&token_file, &rotated);
    sc.clock.advance(299);
    sc.get(path).await.token();
    sc.clock.advance(2);
    sc.get(path).await.token();
    let sent: Vec<String> = relay
        .token_calls()
        .iter()
        .map(|c| c.param("client_assertion").unwrap())
        .collect();
    assert_eq!(sent, vec![first.clone(), first, rotated]);
    assert_eq!(
        sc.metric("agentid_sidecar_assertion_file_reads_total{result=\"success\"}")
            .await,
        2.0
    );
    // A failed re-read keeps the cached token while it has time left.
    std::fs::remove_file(&token_file).unwrap();
    sc.clock.advance(301);
    assert_eq!(sc.get(path).await.status, 200);
    assert_eq!(
        sc.metric("agentid_sidecar_assertion_file_reads_total{result=\"error\"}")
            .await,
        1.0
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_empty_and_expired_token_files() {
    let (kube, sts, token_file) = cluster().await;
    let relay = Relay::for_sts(&sts).await;
    // J9: no disk path, AZURE_FEDERATED_TOKEN_FILE as the fallback, and the file is empty.
    let empty = token_file.with_file_name("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let env = file_env(
        &sts,
        &relay,
        &[("AZURE_FEDERATED_TOKEN_FILE", empty.display().to_string())],
    );
    let sc = TestSidecar::start(env).await;
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    r.assert_problem(
        500,
        &format!(
            "No usable client credential: credential 0: the federated token file {} is empty",
            empty.display()
        ),
    );
    assert!(relay.token_calls().is_empty());
    // Missing.
    let missing = token_file.with_file_name("missing-token");
    let env = file_env(
        &sts,
        &relay,
        &[(
            "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath",
            missing.display().to_string(),
        )],
    );
    let sc = TestSidecar::start(env).await;
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.detail()
            .starts_with("No usable client credential: credential 0: the federated token file"),
        "{}",
        r.detail()
    );
    assert!(r.detail().contains("cannot be read"), "{}", r.detail());
    // Expired: sent, refused by the authority (AADSTS700024), re-read once, then 401.
    let expired = token_file.with_file_name("expired-token");
    let now = chrono::Utc::now().timestamp();
    write(
        &expired,
        &kube.mint_at(
            "agents",
            "blog-agent",
            "api://AzureADTokenExchange",
            now - 7200,
            3600,
        ),
    );
    let env = file_env(
        &sts,
        &relay,
        &[(
            "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath",
            expired.display().to_string(),
        )],
    );
    let sc = TestSidecar::start(env).await;
    relay.clear();
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.detail().starts_with("AADSTS700024"), "{}", r.detail());
    assert_eq!(
        relay.token_calls().len(),
        1,
        "the same content is not sent twice"
    );
    // A second credential takes over when the first file is unusable.
    let env = file_env(
        &sts,
        &relay,
        &[
            (
                "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath",
                missing.display().to_string(),
            ),
            (
                "AzureAd__ClientCredentials__1__SourceType",
                "SignedAssertionFilePath".into(),
            ),
            (
                "AzureAd__ClientCredentials__1__SignedAssertionFileDiskPath",
                token_file.display().to_string(),
            ),
        ],
    );
    let sc = TestSidecar::start(env).await;
    relay.clear();
    let r = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={FIC_AGENT}"
        ))
        .await;
    assert_eq!(claim(&r.claims(), "appid"), FIC_AGENT);
    let calls = relay.token_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (
            calls[0].param("client_id").as_deref(),
            calls[0].param("fmi_path").as_deref()
        ),
        (Some(FIC_BP), Some(FIC_AGENT))
    );
    assert_eq!(
        calls[0].param("client_assertion").unwrap(),
        std::fs::read_to_string(&token_file).unwrap()
    );
    assert_eq!(leg(&calls[1]), "agent_app");
    sts.stop().await;
}
