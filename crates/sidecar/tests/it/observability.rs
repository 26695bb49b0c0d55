//! Metrics, logs and configuration sources (docs/sidecar.md §12, §13, §16.P1, P2, P4).

use crate::support::*;
use agentid_testkit::certs::ClientCert;
use agentid_testkit::{Db, TestSts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    // P1
    let sts = start_sts().await;
    let relay = Relay::for_sts(&sts).await;
    let sc = TestSidecar::relayed(
        &sts,
        &relay,
        &[("Sidecar__AllowedAgentIdentities__0", Some(AGENT))],
    )
    .await;
    let tc = alice_tc(&sts).await;
    for _ in 0..3 {
        sc.get("/AuthorizationHeaderUnauthenticated/graph-app")
            .await
            .token();
    }
    sc.get(&format!(
        "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
    ))
    .await
    .token();
    sc.get_as(
        &format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}"),
        &tc,
    )
    .await
    .token();
    sc.get("/nope").await;
    sc.get("/AuthorizationHeader/graph").await;
    let m = sc.metrics().await;
    let v = |s: &str| {
        m.iter()
            .find(|(n, _)| n == s)
            .map(|(_, v)| *v)
            .unwrap_or(0.0)
    };
    assert_eq!(
        v(
            "agentid_sidecar_requests_total{route=\"authorization_header_unauthenticated\",status=\"200\"}"
        ),
        4.0
    );
    assert_eq!(
        v("agentid_sidecar_requests_total{route=\"authorization_header\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        v("agentid_sidecar_requests_total{route=\"authorization_header\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        v("agentid_sidecar_requests_total{route=\"unmatched\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        v("agentid_sidecar_token_cache_lookups_total{flow=\"app\",leg=\"final\",result=\"hit\"}"),
        2.0
    );
    assert_eq!(
        v("agentid_sidecar_token_cache_lookups_total{flow=\"app\",leg=\"final\",result=\"miss\"}"),
        1.0
    );
    assert_eq!(
        v(
            "agentid_sidecar_token_cache_lookups_total{flow=\"agent_obo\",leg=\"t1\",result=\"hit\"}"
        ),
        1.0
    );
    assert_eq!(
        v("agentid_sidecar_token_requests_total{flow=\"agent_app\",leg=\"t1\",result=\"success\"}"),
        1.0
    );
    assert_eq!(
        v(
            "agentid_sidecar_token_requests_total{flow=\"agent_obo\",leg=\"final\",result=\"success\"}"
        ),
        1.0
    );
    let token_requests: f64 = m
        .iter()
        .filter(|(n, _)| n.starts_with("agentid_sidecar_token_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        token_requests as usize,
        relay.token_calls().len(),
        "one count per authority call"
    );
    assert_eq!(
        v("agentid_sidecar_token_cache_entries"),
        4.0,
        "app, t1, agent_app, agent_obo"
    );
    assert_eq!(
        v(&format!(
            "agentid_sidecar_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(
        v(
            "agentid_sidecar_request_duration_seconds_count{route=\"authorization_header_unauthenticated\"}"
        ) >= 4.0
    );
    assert!(
        v(
            "agentid_sidecar_authority_request_duration_seconds_count{leg=\"final\",result=\"success\"}"
        ) >= 3.0
    );
    // No agent id, UPN, tenant or unconfigured API name in any label.
    let text = sc.get("/metrics").await.text();
    for secret in [AGENT, &sts.tenant_id, "alice", "nope"] {
        assert!(!text.contains(secret), "{secret} in metrics");
    }
    logs::assert_no_secrets(&[BP_SECRET, &tc]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_access_log_line_per_request_without_secrets() {
    // P2 (every test also scans the captured logs for its own secrets)
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let tc = alice_tc(&sts).await;
    let id = cid();
    let r = sc
        .send(
            reqwest::Method::GET,
            &format!(
                "/AuthorizationHeader/graph?AgentIdentity={AGENT}&optionsOverride.Scopes={}",
                enc(GRAPH_DEFAULT)
            ),
            Some(&tc),
            &[("x-correlation-id", &id)],
            None,
        )
        .await;
    let token = r.token();
    let lines = logs::lines_with(&id);
    let access: Vec<_> = lines.iter().filter(|l| l["event"] == "request").collect();
    assert_eq!(access.len(), 1, "{lines:?}");
    let a = access[0];
    assert_eq!(a["level"], "INFO");
    assert_eq!(a["route"], "authorization_header");
    assert_eq!(a["status"], 200);
    assert_eq!(a["flow"], "agent_obo");
    assert_eq!(a["agent_identity"], AGENT);
    assert!(a["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(a["duration_ms"].is_number());
    // The token appears only by its uti; the query only as names (and harmless values).
    let uti = agentid_testkit::claims(&token)["uti"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a["token"], uti.as_str());
    assert!(a["query"].as_str().unwrap().contains("AgentIdentity"));
    assert!(a["query"].as_str().unwrap().contains(GRAPH_DEFAULT));
    logs::assert_no_secrets(&[BP_SECRET, &tc, &token]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_environment_with_both_scope_forms() {
    // P4
    logs::init();
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    let cfg = serde_json::json!({
        "AzureAd": {
            "Instance": format!("{}/", sts.base()), "TenantId": sts.tenant_id, "ClientId": BP,
            "ClientCredentials": [{"SourceType": "ClientSecret", "ClientSecret": "wrong-in-file"}]
        },
        "DownstreamApis": {
            "arr": {"Scopes": [GRAPH_DEFAULT], "RequestAppToken": true},
            "str": {"Scopes": GRAPH_DEFAULT, "RequestAppToken": "true"}
        },
        "Sidecar": {"ListenUrl": "http://127.0.0.1:0", "HealthListenUrl": "off", "ExtraCaBundlePath": sts.ca_file()},
        "Logging": {"LogLevel": {"Default": "Information", "Microsoft.AspNetCore": "Warning"}},
        "AllowedHosts": "*"
    });
    std::fs::write(&file, cfg.to_string()).unwrap();
    // The environment wins over the file (here: the right secret).
    let mut sources = agentid_sidecar::ConfigSources::from_vars(&[
        ("AZUREAD__CLIENTCREDENTIALS__0__CLIENTSECRET", BP_SECRET),
        ("DownstreamApis__env__Scopes", GRAPH_DEFAULT),
        ("DownstreamApis__env__RequestAppToken", "True"),
    ]);
    sources.file = Some(file);
    let config = agentid_sidecar::config::load(&sources).unwrap();
    let sc = TestSidecar {
        running: agentid_sidecar::start(config).await.unwrap(),
        clock: agentid_sidecar::clock::ManualClock::new(),
        url: String::new(),
        http: http_client(),
        env: vec![],
    };
    let sc = TestSidecar {
        url: sc.running.url(),
        ..sc
    };
    for api in ["arr", "str", "env"] {
        let c = sc
            .get(&format!("/AuthorizationHeaderUnauthenticated/{api}"))
            .await
            .claims();
        assert_eq!(claim(&c, "appid"), BP, "{api}");
    }
    logs::assert_no_secrets(&[BP_SECRET, "wrong-in-file"]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credential_private_key_jwt() {
    // SourceType Path: a certificate registered on the blueprint, separate or combined PEM files.
    let cert = ClientCert::generate("sidecar-blueprint");
    let dir = TestSts::prepare_dir();
    std::fs::write(dir.path().join("bp-cert.pem"), &cert.cert_pem).unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&tenant(None)).unwrap();
    doc["blueprints"][0]["certificates"] =
        serde_yaml_ng::from_str("[{file: bp-cert.pem}]").unwrap();
    let sts = TestSts::start_in(
        dir,
        Db::Sqlite,
        &serde_yaml_ng::to_string(&doc).unwrap(),
        Default::default(),
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let (c, k, both) = (
        files.path().join("c.pem"),
        files.path().join("k.pem"),
        files.path().join("both.pem"),
    );
    std::fs::write(&c, &cert.cert_pem).unwrap();
    std::fs::write(&k, &cert.key_pem).unwrap();
    std::fs::write(&both, format!("{}{}", cert.cert_pem, cert.key_pem)).unwrap();
    let relay = Relay::for_sts(&sts).await;
    for (cert_path, key_path, x5c) in [(&c, Some(&k), "false"), (&both, None, "true")] {
        let mut changes = vec![
            (
                "AzureAd__ClientCredentials__0__SourceType",
                Some("Path".to_string()),
            ),
            ("AzureAd__ClientCredentials__0__ClientSecret", None),
            (
                "AzureAd__ClientCredentials__0__CertificateDiskPath",
                Some(cert_path.display().to_string()),
            ),
            ("AzureAd__SendX5C", Some(x5c.to_string())),
            (
                "Sidecar__AllowedAgentIdentities__0",
                Some(AGENT.to_string()),
            ),
        ];
        if let Some(k) = key_path {
            changes.push((
                "AzureAd__ClientCredentials__0__CertificateKeyPath",
                Some(k.display().to_string()),
            ));
        }
        let refs: Vec<(&str, Option<&str>)> =
            changes.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        // Against the STS itself: the assertion's audience is its token endpoint.
        let sc = TestSidecar::direct(&sts, &refs).await;
        let c1 = sc
            .get("/AuthorizationHeaderUnauthenticated/graph-app")
            .await
            .claims();
        assert_eq!((claim(&c1, "appid"), claim(&c1, "appidacr")), (BP, "2"));
        let c2 = sc
            .get(&format!(
                "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
            ))
            .await
            .claims();
        assert_eq!(claim(&c2, "appid"), AGENT);
        // Through the relay, to look at the assertions (the STS then refuses their audience).
        let sc = TestSidecar::relayed(&sts, &relay, &refs).await;
        relay.clear();
        sc.get("/AuthorizationHeaderUnauthenticated/graph-app")
            .await;
        sc.get("/AuthorizationHeaderUnauthenticated/graph-app")
            .await;
        let calls = relay.token_calls();
        assert_eq!(calls.len(), 2, "refusals are not cached");
        let a1 = calls[0].param("client_assertion").unwrap();
        let a2 = calls.last().unwrap().param("client_assertion").unwrap();
        assert_ne!(a1, a2, "a fresh assertion per request");
        let h = agentid_testkit::header(&a1);
        assert_eq!(h["x5t"], cert.x5t.as_str());
        assert!(h["x5t#S256"].is_string());
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h.contains_key("x5c"), x5c == "true");
        let claims = agentid_testkit::claims(&a1);
        assert_eq!(
            claims["aud"],
            format!("{}/{}/oauth2/v2.0/token", relay.url, sts.tenant_id)
        );
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some(BP), Some(BP))
        );
        assert!(claims["jti"].is_string());
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            600
        );
        logs::assert_no_secrets(&[&a1, &a2, cert.key_pem.lines().nth(1).unwrap()]);
    }
    sts.stop().await;
}
