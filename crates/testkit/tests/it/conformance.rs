//! Conformance with unmodified Microsoft clients: MSAL Python and azure-identity, run from the
//! pinned venv that `scripts/conformance-venv.sh` builds, against the STS over real HTTPS.
//! The Python side only obtains tokens; the claims are asserted here.

use agentid_testkit::certs::ClientCert;
use agentid_testkit::sts::Options;
use agentid_testkit::{Db, KubeIssuer, TestSts, both_backends, claims};
use serde_json::Value;
use std::path::PathBuf;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const FIC_BP: &str = "3d1b7a2e-6a0e-4f58-9c1b-2f0e8a9d7c11";
const FIC_AGENT: &str = "9b0f7c55-2a6d-4e8e-b3f1-5c7a9d1e2f30";
const CERT_APP: &str = "c4a1e0b2-8d3f-4a6b-9e7c-1f2d3b4a5c6d";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AGENTID_CONFORMANCE_PYTHON") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join("target/conformance-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/conformance-venv.sh (the test command does)",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance")
        .join(name)
}

/// The demo tenant plus a certificate app and a blueprint federated with the emulated cluster.
fn tenant(kube: &KubeIssuer) -> String {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(DEMO).unwrap();
    let add = |doc: &mut serde_yaml_ng::Value, key: &str, item: String| {
        let item: serde_yaml_ng::Value = serde_yaml_ng::from_str(&item).unwrap();
        let seq = doc
            .as_mapping_mut()
            .unwrap()
            .entry(key.into())
            .or_insert(serde_yaml_ng::Value::Sequence(vec![]));
        seq.as_sequence_mut().unwrap().push(item);
    };
    add(
        &mut doc,
        "applications",
        format!(
            "{{name: cert-app, displayName: Certificate app, appId: {CERT_APP}, certificates: [{{file: client-cert.pem}}]}}"
        ),
    );
    add(
        &mut doc,
        "blueprints",
        format!(
            "{{name: k8s-bp, displayName: Kubernetes blueprint, appId: {FIC_BP}, federatedCredentials: [{{name: agents-blog-agent, issuer: '{iss}', subject: 'system:serviceaccount:agents:blog-agent'}}], agents: [{{name: k8s-agent, displayName: Kubernetes agent, id: {FIC_AGENT}}}]}}",
            iss = kube.issuer
        ),
    );
    add(
        &mut doc,
        "trustedIssuers",
        format!(
            "{{issuer: '{}', discovery: true, allowHttp: true}}",
            kube.issuer
        ),
    );
    serde_yaml_ng::to_string(&doc).unwrap()
}

async fn run_py(sts: &TestSts, script_name: &str, env: &[(&str, String)]) -> Value {
    let out = tokio::process::Command::new(python())
        .arg(script(script_name))
        .env("REQUESTS_CA_BUNDLE", sts.ca_file())
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script_name} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{script_name} printed no JSON ({e}): {stdout}"))
}

fn token_claims(r: &Value, flow: &str) -> serde_json::Map<String, Value> {
    let t = r[flow]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{flow}: no token: {}", r[flow]));
    claims(t)
}

fn s<'a>(c: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    c.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("claim {k} missing in {c:?}"))
}

both_backends!(msal_python_every_grant, |db: Db| async move {
    let kube = KubeIssuer::start().await;
    let dir = TestSts::prepare_dir();
    let cert = ClientCert::generate("conformance");
    std::fs::write(dir.path().join("client-cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("client-key.pem"), &cert.key_pem).unwrap();
    let sa_file = dir.path().join("azure-identity-token");
    kube.write_token_file(
        &sa_file,
        "agents",
        "blog-agent",
        "api://AzureADTokenExchange",
    );
    let sts = TestSts::start_in(dir, db, &tenant(&kube), Options::default()).await;
    let tid = sts.tenant_id.clone();
    let flows = "secret_app,cert_app,fic_app,fic_t1,t1,t2,user_password,obo,refresh,public_refresh,errors_wrong_secret,t2_exchange,user_fic";
    let r = run_py(
        &sts,
        "msal_flows.py",
        &[
            ("FLOWS", flows.into()),
            ("AUTHORITY", sts.authority()),
            ("BP_ID", BP.into()),
            ("BP_SECRET", "demo-blueprint-secret-change-me".into()),
            ("AGENT_ID", AGENT.into()),
            ("USER_UPN", "alice@contoso.test".into()),
            ("AGENT_USER_UPN", "blog-agent@contoso.test".into()),
            ("USER_PASSWORD", "correct-horse-battery".into()),
            (
                "PUBLIC_CLIENT_ID",
                "14d82eec-204b-4c2f-b7e8-296a70dab67e".into(),
            ),
            ("CERT_APP_ID", CERT_APP.into()),
            (
                "CERT_KEY_PEM_FILE",
                sts.dir.path().join("client-key.pem").display().to_string(),
            ),
            ("CERT_THUMBPRINT", cert.thumbprint_hex.clone()),
            ("FIC_BP_ID", FIC_BP.into()),
            ("FIC_AGENT_ID", FIC_AGENT.into()),
            (
                "SA_TOKEN_FILE",
                sts.dir
                    .path()
                    .join("azure-identity-token")
                    .display()
                    .to_string(),
            ),
        ],
    )
    .await;

    // (a) blueprint token with a secret
    let c = token_claims(&r, "secret_app");
    assert_eq!(
        (s(&c, "appid"), s(&c, "appidacr"), s(&c, "idtyp")),
        (BP, "1", "app")
    );
    assert_eq!(
        c["roles"],
        serde_json::json!(["AgentIdentity.CreateAsManager"])
    );
    // private_key_jwt (MSAL: padded x5t, float exp/iat)
    let c = token_claims(&r, "cert_app");
    assert_eq!(
        (s(&c, "appid"), s(&c, "appidacr"), s(&c, "xms_act_fct")),
        (CERT_APP, "2", "9 3")
    );
    // federated: the emulated projected service-account token, keys from discovery
    let c = token_claims(&r, "fic_app");
    assert_eq!((s(&c, "appid"), s(&c, "appidacr")), (FIC_BP, "2"));
    let c = token_claims(&r, "fic_t1");
    assert_eq!(s(&c, "azp"), FIC_BP);
    assert!(s(&c, "sub").ends_with(&format!("/{FIC_AGENT}")));
    // (b) T1 and (c) T2 with T1 as the agent's assertion
    let c = token_claims(&r, "t1");
    assert_eq!(
        (s(&c, "aud"), s(&c, "ver"), s(&c, "xms_act_fct")),
        ("fb60f99c-7a34-4190-8149-302f77469936", "2.0", "3 9")
    );
    let c = token_claims(&r, "t2");
    assert_eq!(
        (
            s(&c, "appid"),
            s(&c, "sub"),
            s(&c, "xms_par_app_azp"),
            s(&c, "xms_act_fct")
        ),
        (AGENT, AGENT, BP, "3 11 9")
    );
    // Tc by password, then (d) agent OBO, then (f) refresh
    let c = token_claims(&r, "user_password");
    assert_eq!(
        (s(&c, "aud"), s(&c, "scp"), s(&c, "idtyp")),
        (format!("api://{BP}").as_str(), "access_as_user", "user")
    );
    assert!(
        r["user_password"]["id_token_claims"]["sub"].is_string(),
        "MSAL parsed the ID token"
    );
    assert_eq!(r["user_password"]["id_token_claims"]["tid"], tid.as_str());
    let c = token_claims(&r, "obo");
    assert_eq!(
        (s(&c, "appid"), s(&c, "idtyp"), s(&c, "upn")),
        (AGENT, "user", "alice@contoso.test")
    );
    assert_eq!(
        (
            s(&c, "xms_act_fct"),
            s(&c, "xms_sub_fct"),
            s(&c, "xms_par_app_azp")
        ),
        ("11 9 3", "2 3", BP)
    );
    assert_eq!(s(&c, "scp"), "User.Read openid profile");
    let c = token_claims(&r, "refresh");
    assert_eq!(
        (s(&c, "appid"), s(&c, "oid")),
        (AGENT, "0501a526-79e4-46ff-bd07-6605a752287b")
    );
    let c = token_claims(&r, "public_refresh");
    assert_eq!(s(&c, "appid"), "14d82eec-204b-4c2f-b7e8-296a70dab67e");
    // (g) the agent's own user account: T2′ then user_fic
    let c = token_claims(&r, "t2_exchange");
    assert_eq!(
        (s(&c, "aud"), s(&c, "azp"), s(&c, "xms_act_fct")),
        ("fb60f99c-7a34-4190-8149-302f77469936", AGENT, "3 11 9")
    );
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let c = token_claims(&r, "user_fic");
    assert_eq!(
        (s(&c, "appid"), s(&c, "idtyp"), s(&c, "upn")),
        (AGENT, "user", "blog-agent@contoso.test")
    );
    assert_eq!(
        (
            s(&c, "xms_act_fct"),
            s(&c, "xms_sub_fct"),
            s(&c, "xms_idrel"),
            s(&c, "xms_tnt_fct")
        ),
        ("1 9 11", "1 13", "1 8", "6 1")
    );
    assert_eq!(s(&c, "xms_par_app_azp"), BP);
    assert!(!c.contains_key("amr"));
    // errors come back in Entra's shape and MSAL surfaces them
    let e = &r["errors_wrong_secret"];
    assert_eq!(e["error"], "invalid_client");
    assert_eq!(e["error_codes"][0], 7000215);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215: ")
    );
    sts.stop().await;
});

both_backends!(
    azure_identity_workload_identity_credential,
    |db: Db| async move {
        let kube = KubeIssuer::start().await;
        let dir = TestSts::prepare_dir();
        let cert = ClientCert::generate("unused");
        std::fs::write(dir.path().join("client-cert.pem"), &cert.cert_pem).unwrap();
        let token_file = dir.path().join("azure-identity-token");
        kube.write_token_file(
            &token_file,
            "agents",
            "blog-agent",
            "api://AzureADTokenExchange",
        );
        // kubelet-written files end without a newline; azure-identity sends the content as is.
        let sts = TestSts::start_in(dir, db, &tenant(&kube), Options::default()).await;
        let env = [
            ("AZURE_AUTHORITY_HOST", sts.base().to_string()),
            ("AZURE_TENANT_ID", sts.tenant_id.clone()),
            ("AZURE_CLIENT_ID", FIC_BP.to_string()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("SCOPE", "https://graph.microsoft.com/.default".to_string()),
        ];
        let r = run_py(&sts, "azure_identity_flows.py", &env).await;
        let c = claims(
            r["token"]
                .as_str()
                .unwrap_or_else(|| panic!("no token: {r}")),
        );
        assert_eq!(
            (s(&c, "appid"), s(&c, "appidacr"), s(&c, "aud")),
            (FIC_BP, "2", "https://graph.microsoft.com")
        );
        assert!(r["expires_on"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 3000);
        // The same credential with a service account the blueprint does not trust is refused.
        kube.write_token_file(&token_file, "agents", "other", "api://AzureADTokenExchange");
        let r = run_py(&sts, "azure_identity_flows.py", &env).await;
        assert!(
            r["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains("AADSTS700213"),
            "{r}"
        );
        sts.stop().await;
    }
);
