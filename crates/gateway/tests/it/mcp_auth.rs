//! MCP clients through `mcpAuthentication` (docs/gateway.md §18, docs/sts.md §16): the official
//! MCP Python SDK client with its OAuth provider, unmodified, knowing only the gateway URL,
//! discovers, registers, signs in (forms submitted like a browser without JavaScript), calls a
//! tool, and refreshes silently on a second run; an agent's token reaches the same route; and
//! the refusals. The same client names itself by a client ID metadata document served by the
//! test over TLS (docs/sts.md §16.4), with that feature's refusals.

use crate::support::*;
use agentid_directory::mcp_clients::RegistrationMode;
use serde_json::{Value, json};
use std::path::PathBuf;

const IAT: &str = "initial-access-token-for-tests";
const REDIRECT: &str = "http://127.0.0.1:53682/callback";

fn python() -> PathBuf {
    std::env::var("AGENTID_CONFORMANCE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/conformance-venv/bin/python")
        })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/mcp_oauth_client.py")
}

/// A route that admits people's MCP clients and agents acting for a person
/// (docs/gateway.md §18.1), in the shared shape of `support::mcp_oauth`.
fn route(name: &str, audience: &str, iss: &str, mcp: std::net::SocketAddr) -> String {
    crate::support::mcp_oauth::mcp_route(
        name,
        audience,
        iss,
        mcp,
        "mcpAuthorization",
        &[
            "agent.onBehalfOfUser",
            "!agent.isAgent && agent.tokenType == 'user'",
        ],
    )
}

fn no_redirects(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `error` of the redirect `/authorize` answers with.
async fn authorize_error(http: &reqwest::Client, url: &str, params: &[(&str, &str)]) -> String {
    let r = http.get(url).query(params).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no error in {loc}"))
}

async fn run_client(gw_mcp: &str, storage: &std::path::Path, ca: &PathBuf, second: bool) -> Value {
    run_client_as(gw_mcp, storage, ca, second, None).await
}

async fn run_client_as(
    gw_mcp: &str,
    storage: &std::path::Path,
    ca: &PathBuf,
    second: bool,
    metadata_url: Option<&str>,
) -> Value {
    let out = tokio::process::Command::new(python())
        .arg(script())
        .env("CLIENT_METADATA_URL", metadata_url.unwrap_or(""))
        .env("MCP_URL", gw_mcp)
        .env("STORAGE", storage)
        .env("CA_FILE", ca)
        .env("USERNAME", agentid_testkit::demo::ALICE_UPN)
        .env("PASSWORD", agentid_testkit::demo::ALICE_PASSWORD)
        .env("TOOL", "whoami")
        .env("SECOND_RUN", if second { "1" } else { "0" })
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the MCP client failed (second run: {second}):\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_python_sdk_oauth_client_signs_in_through_agentid() {
    let sts = sts().await;
    let store = sts.running.state.store.clone();
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let agent_token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&agent_token, "iss").as_str().unwrap().to_string();
    let (mcp, _rec) = mock_mcp("demo", &["whoami"]).await;
    let config = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:{}{}",
        route("mcp", &format!("api://{MCP_APP}"), &iss, mcp),
        route("other", &format!("api://{BP}"), &iss, mcp),
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    let mcp_url = gw.url(3000, "/mcp");
    let other_url = gw.url(3000, "/other");
    store
        .set_protected_resource(&tid, &mcp_url, &MCP_APP.parse().unwrap())
        .await
        .unwrap();
    store
        .set_protected_resource(&tid, &other_url, &BP.parse().unwrap())
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    store
        .set_registration_policy(&tid, RegistrationMode::Token, Some(IAT), now)
        .await
        .unwrap();
    let ca = std::fs::read_to_string(sts.ca_file()).unwrap();
    let http = no_redirects(&ca);

    // 1. The 401 names the metadata; the metadata names the tenant's v2 authority.
    let r = gw
        .http
        .post(&mcp_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        gw.url(3000, "")
    );
    assert_eq!(
        challenge,
        format!(r#"Bearer resource_metadata="{prm_url}", scope="access_as_user""#)
    );
    let r = gw
        .http
        .get(&prm_url)
        .header("origin", "https://inspector.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let prm: Value = r.json().await.unwrap();
    let authority = format!("{}/v2.0", sts.authority());
    assert_eq!(prm["resource"], json!(mcp_url));
    assert_eq!(prm["authorization_servers"], json!([authority]));
    assert_eq!(prm["scopes_supported"], json!(["access_as_user"]));
    let asm_url = format!(
        "{}/.well-known/oauth-authorization-server/{}/v2.0",
        sts.base(),
        sts.tenant_id
    );
    let (status, asm) = sts.get_json(&asm_url).await;
    assert_eq!(status, 200);
    let (_, oidc) = sts
        .get_json(&format!(
            "{}/v2.0/.well-known/openid-configuration",
            sts.authority()
        ))
        .await;
    assert_eq!(asm["issuer"], json!(authority));
    assert_eq!(
        asm["authorization_endpoint"],
        oidc["authorization_endpoint"]
    );
    assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
    let register = asm["registration_endpoint"].as_str().unwrap().to_string();

    // 2. Registration: refused without the initial access token, accepted with it.
    let body = json!({"redirect_uris": [REDIRECT], "client_name": "refusal probe"});
    let r = http.post(&register).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&register)
        .bearer_auth("wrong-token-wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&register)
        .bearer_auth(IAT)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let probe: Value = r.json().await.unwrap();
    let probe_id = probe["client_id"].as_str().unwrap().to_string();
    assert_eq!(probe["token_endpoint_auth_method"], "none");

    // 3. Refusals at /authorize: PKCE plain, an unknown resource, another route's resource.
    let authorize = oidc["authorization_endpoint"].as_str().unwrap();
    let challenge_s256 = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let base = |resource: &str, method: &str, scope: &str| {
        vec![
            ("client_id", probe_id.clone()),
            ("redirect_uri", REDIRECT.to_string()),
            ("response_type", "code".to_string()),
            ("scope", scope.to_string()),
            ("code_challenge", challenge_s256.to_string()),
            ("code_challenge_method", method.to_string()),
            ("resource", resource.to_string()),
        ]
    };
    let ask = |p: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = authorize.to_string();
        async move {
            let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            authorize_error(&http, &url, &refs).await
        }
    };
    assert_eq!(
        ask(base(&mcp_url, "plain", "access_as_user")).await,
        "invalid_request"
    );
    assert_eq!(
        ask(base(
            "https://unknown.example/mcp",
            "S256",
            "access_as_user"
        ))
        .await,
        "invalid_target"
    );
    assert_eq!(
        ask(base(
            &other_url,
            "S256",
            &format!("api://{MCP_APP}/access_as_user")
        ))
        .await,
        "invalid_target"
    );

    // 4. The SDK client: open registration (what clients that know nothing of the tenant use).
    store
        .set_registration_policy(&tid, RegistrationMode::Open, None, now)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("tokens.json");
    let first = run_client(&mcp_url, &storage, &sts.ca_file(), false).await;
    assert_eq!(first["browser"], json!(true), "{first}");
    let authorize_url = first["authorize_url"].as_str().unwrap();
    assert!(
        authorize_url.starts_with(authorize)
            && authorize_url.contains("code_challenge_method=S256"),
        "{authorize_url}"
    );
    assert!(
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "whoami"),
        "{first}"
    );
    assert!(
        first["called"][0].as_str().unwrap().contains("ran whoami"),
        "{first}"
    );
    let client_id = first["client_id"].as_str().unwrap().to_string();
    let token = first["access_token"].as_str().unwrap();
    assert_eq!(claim(token, "aud"), json!(format!("api://{MCP_APP}")));
    assert_eq!(claim(token, "appid"), json!(client_id));
    assert_eq!(claim(token, "oid"), json!(ALICE));
    let client = store
        .application_by_app_id(&tid, &client_id.parse().unwrap())
        .await
        .unwrap()
        .expect("the registered client is in the directory");
    assert!(client.is_public_client);
    let consent = first["consent_page"].as_str().unwrap_or_default();
    assert!(
        consent.contains("agentid conformance MCP client (unverified, self-registered)"),
        "{consent}"
    );

    // The audit says "user X via client Y" (no agent).
    let call = agentid_testkit::poll::eventually(
        std::time::Duration::from_secs(10),
        "the tools/call audit event",
        || async {
            gw.audit("route=mcp")
                .await
                .into_iter()
                .find(|e| e["mcp"]["method"] == "tools/call")
        },
    )
    .await;
    assert_eq!(call["identity"]["userOid"], json!(ALICE), "{call}");
    assert_eq!(call["identity"]["clientAppId"], json!(client_id), "{call}");
    assert_eq!(call["identity"]["agentId"], Value::Null, "{call}");

    // 5. A token for the wrong resource: this route's token at the other route.
    let r = gw
        .http
        .post(&other_url)
        .bearer_auth(token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let c = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        c.contains("oauth-protected-resource/other") && c.contains(r#"error="invalid_token""#),
        "{c}"
    );

    // 6. Silent refresh: the expired access token was refreshed without the browser, and a
    // second run (a new process) uses the stored tokens without it.
    assert_ne!(
        first["token_before_refresh"], first["token_sha256"],
        "refreshed: {first}"
    );
    assert!(
        first["called_after_refresh"][0]
            .as_str()
            .unwrap()
            .contains("ran whoami")
    );
    let second = run_client(&mcp_url, &storage, &sts.ca_file(), true).await;
    assert_eq!(second["browser"], json!(false));
    assert_eq!(second["client_id"], json!(client_id));
    assert_eq!(second["token_sha256"], first["token_sha256"]);
    assert!(second["called"][0].as_str().unwrap().contains("ran whoami"));

    // 7. Agents stay first-class: the agent acting for alice reaches the same route.
    let (status, _, _) = gw
        .mcp(
            3000,
            Some(&agent_token),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "agent", "version": "1"}}}),
        )
        .await;
    assert_eq!(status, 200);
    sts.stop().await;
}

// ---- client ID metadata documents (docs/sts.md §16.4) ------------------------------------------

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// HTTPS on 127.0.0.1 under a test CA (names `127.0.0.1` and `localhost`), serving the JSON
/// documents of `docs` by path and counting requests per path.
struct DocServer {
    port: u16,
    docs: Arc<Mutex<HashMap<String, Value>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    dir: tempfile::TempDir,
}

impl DocServer {
    async fn start() -> DocServer {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agentid client metadata test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let docs: Arc<Mutex<HashMap<String, Value>>> = Default::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Default::default();
        let (d, h) = (docs.clone(), hits.clone());
        let router = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (d, h) = (d.clone(), h.clone());
            async move {
                let path = uri.path().to_string();
                *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                match d.lock().unwrap().get(&path) {
                    Some(v) => {
                        ([("cache-control", "max-age=600")], axum::Json(v.clone())).into_response()
                    }
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        DocServer {
            port,
            docs,
            hits,
            dir,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn serve(&self, path: &str, doc: Value) {
        self.docs.lock().unwrap().insert(path.into(), doc);
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

use axum::response::IntoResponse;

/// A client document at `url` with these redirect URIs.
fn client_doc(url: &str, redirect_uris: &[&str]) -> Value {
    json!({
        "client_id": url,
        "client_name": "agentid CIMD test client",
        "client_uri": "https://example.com/about",
        "redirect_uris": redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    })
}

/// The status and text of `/authorize` for a metadata-document `client_id`.
async fn authorize_page(
    http: &reqwest::Client,
    authorize: &str,
    client_id: &str,
    redirect_uri: &str,
) -> (u16, String) {
    let r = http
        .get(authorize)
        .query(&[
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", "access_as_user"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        agentid_testkit::browser::unescape(&r.text().await.unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_python_sdk_client_signs_in_with_a_client_id_metadata_document() {
    let docs = DocServer::start().await;
    let ca_file = docs.ca_file();
    // Loopback documents under the test CA: explicitly allowed for this STS only.
    let defaults = agentid_testkit::sts::Options::default();
    let base = defaults.configure;
    let sts = agentid_testkit::TestSts::start_with(
        agentid_testkit::Db::Sqlite,
        &agentid_testkit::demo::demo_tenant_with_llm_grant(),
        agentid_testkit::sts::Options {
            configure: Box::new(move |s| {
                base(s);
                s.client_metadata.allow_private_hosts = true;
                s.client_metadata.ca_file = Some(ca_file);
            }),
            tls: defaults.tls,
        },
    )
    .await;
    let store = sts.running.state.store.clone();
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let agent_token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&agent_token, "iss").as_str().unwrap().to_string();
    let (mcp, _rec) = mock_mcp("demo", &["whoami"]).await;
    let config = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:{}",
        route("mcp", &format!("api://{MCP_APP}"), &iss, mcp),
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    let mcp_url = gw.url(3000, "/mcp");
    store
        .set_protected_resource(&tid, &mcp_url, &MCP_APP.parse().unwrap())
        .await
        .unwrap();
    let client_url = docs.url("127.0.0.1", "/client.json");
    docs.serve("/client.json", client_doc(&client_url, &[REDIRECT]));

    // Registration stays off: the client has to use its document. Metadata says it may.
    let asm_url = format!(
        "{}/.well-known/oauth-authorization-server/{}/v2.0",
        sts.base(),
        sts.tenant_id
    );
    let (_, asm) = sts.get_json(&asm_url).await;
    assert_eq!(asm["client_id_metadata_document_supported"], json!(true));
    assert!(asm.get("registration_endpoint").is_none(), "{asm}");

    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("tokens.json");
    let first = run_client_as(&mcp_url, &storage, &sts.ca_file(), false, Some(&client_url)).await;
    assert_eq!(first["browser"], json!(true), "{first}");
    assert_eq!(first["client_id"], json!(client_url), "{first}");
    assert!(
        first["called"][0].as_str().unwrap().contains("ran whoami"),
        "{first}"
    );
    // The refresh presented the URL as client_id at /token.
    assert!(
        first["called_after_refresh"][0]
            .as_str()
            .unwrap()
            .contains("ran whoami"),
        "{first}"
    );
    assert_ne!(first["token_before_refresh"], first["token_sha256"]);
    // Tokens carry the application made for the URL; the directory records the URL.
    let app_id = store
        .metadata_document_client(&tid, &client_url)
        .await
        .unwrap()
        .expect("an application for the document URL");
    let token = first["access_token"].as_str().unwrap();
    assert_eq!(claim(token, "appid"), json!(app_id.to_string()));
    assert_eq!(claim(token, "aud"), json!(format!("api://{MCP_APP}")));
    assert_eq!(claim(token, "oid"), json!(ALICE));
    assert_eq!(
        store.metadata_document_url(&tid, &app_id).await.unwrap(),
        Some(client_url.clone())
    );
    let app = store
        .application_by_app_id(&tid, &app_id)
        .await
        .unwrap()
        .unwrap();
    assert!(app.is_public_client);
    assert_eq!(
        app.display_name,
        "agentid CIMD test client (unverified, 127.0.0.1)"
    );
    // The consent page names the host as unverified.
    let consent = first["consent_page"].as_str().unwrap_or_default();
    assert!(
        consent.contains(
            "<strong>127.0.0.1</strong> — unverified: this app's identity is only its web address"
        ),
        "{consent}"
    );
    // Fetched once: the document is cached (max-age=600).
    assert_eq!(docs.hits("/client.json"), 1);

    // Refusals, each an error page before anything is redirected.
    let ca = std::fs::read_to_string(sts.ca_file()).unwrap();
    let http = no_redirects(&ca);
    let (_, oidc) = sts
        .get_json(&format!(
            "{}/v2.0/.well-known/openid-configuration",
            sts.authority()
        ))
        .await;
    let authorize = oidc["authorization_endpoint"].as_str().unwrap();
    // A redirect URI the document does not list (the cached document is used).
    let (status, page) = authorize_page(
        &http,
        authorize,
        &client_url,
        "http://127.0.0.1:1/elsewhere",
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("AADSTS50011"), "{page}");
    assert_eq!(docs.hits("/client.json"), 1);
    // A document whose redirect URIs do not match the request's.
    let other = docs.url("127.0.0.1", "/other-redirects.json");
    docs.serve(
        "/other-redirects.json",
        client_doc(&other, &["http://127.0.0.1:1/other"]),
    );
    let (status, page) = authorize_page(&http, authorize, &other, REDIRECT).await;
    assert_eq!(status, 400);
    assert!(page.contains("AADSTS50011"), "{page}");
    // A document whose client_id is not its URL.
    let wrong = docs.url("127.0.0.1", "/wrong-id.json");
    docs.serve("/wrong-id.json", client_doc(&client_url, &[REDIRECT]));
    let (status, page) = authorize_page(&http, authorize, &wrong, REDIRECT).await;
    assert_eq!(status, 400);
    assert!(page.contains("client_id is not the URL"), "{page}");
    // A document with a secret, and one for a confidential client.
    let secret = docs.url("127.0.0.1", "/secret.json");
    let mut d = client_doc(&secret, &[REDIRECT]);
    d["client_secret"] = json!("not-a-secret-once-published");
    docs.serve("/secret.json", d);
    let (_, page) = authorize_page(&http, authorize, &secret, REDIRECT).await;
    assert!(page.contains("must not contain a client secret"), "{page}");
    // An http client_id: refused without a fetch.
    let plain = format!("http://127.0.0.1:{}/client.json", docs.port);
    let (status, page) = authorize_page(&http, authorize, &plain, REDIRECT).await;
    assert_eq!(status, 400);
    assert!(page.contains("must be an https URL"), "{page}");
    assert_eq!(docs.hits("/client.json"), 1);
    // A denied host: refused without a fetch; /token no longer knows the client either.
    let policy = agentid_directory::mcp_clients::MetadataDocumentPolicy {
        deny_hosts: vec!["localhost".into(), "127.0.0.1".into()],
        ..Default::default()
    };
    let now = chrono::Utc::now().timestamp();
    store
        .set_metadata_document_policy(&tid, &policy, now)
        .await
        .unwrap();
    let denied = docs.url("localhost", "/denied.json");
    docs.serve("/denied.json", client_doc(&denied, &[REDIRECT]));
    let (status, page) = authorize_page(&http, authorize, &denied, REDIRECT).await;
    assert_eq!(status, 400);
    assert!(
        page.contains("does not allow client ID metadata documents from 'localhost'"),
        "{page}"
    );
    let refresh = std::fs::read_to_string(&storage).unwrap();
    let refresh: Value = serde_json::from_str(&refresh).unwrap();
    let (status, body) = sts
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_url),
            (
                "refresh_token",
                refresh["tokens"]["refresh_token"].as_str().unwrap(),
            ),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    assert_eq!(docs.hits("/denied.json"), 0);
    // Off: metadata says so, and URL client ids are refused.
    let off = agentid_directory::mcp_clients::MetadataDocumentPolicy {
        mode: agentid_directory::mcp_clients::MetadataDocumentMode::Off,
        ..Default::default()
    };
    store
        .set_metadata_document_policy(&tid, &off, now)
        .await
        .unwrap();
    let (_, asm) = sts.get_json(&asm_url).await;
    assert_eq!(asm["client_id_metadata_document_supported"], json!(false));
    let (_, page) = authorize_page(&http, authorize, &client_url, REDIRECT).await;
    assert!(
        page.contains("does not accept client ID metadata documents"),
        "{page}"
    );
    sts.stop().await;
}

/// Without the operator's switch, a document on a loopback or private address is never
/// fetched, whether the URL names the address or a name resolving to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_documents_on_private_addresses_are_refused_by_default() {
    let docs = DocServer::start().await;
    let sts = sts().await;
    let ca = std::fs::read_to_string(sts.ca_file()).unwrap();
    let http = no_redirects(&ca);
    let authorize = format!("{}/oauth2/v2.0/authorize", sts.authority());
    for host in ["127.0.0.1", "localhost"] {
        let url = docs.url(host, "/client.json");
        docs.serve("/client.json", client_doc(&url, &[REDIRECT]));
        let (status, page) = authorize_page(&http, &authorize, &url, REDIRECT).await;
        assert_eq!(status, 400);
        assert!(
            page.contains("could not be fetched: its host is not a public address"),
            "{host}: {page}"
        );
    }
    assert_eq!(docs.hits("/client.json"), 0);
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let url = docs.url("127.0.0.1", "/client.json");
    assert_eq!(
        sts.running
            .state
            .store
            .metadata_document_client(&tid, &url)
            .await
            .unwrap(),
        None
    );
    sts.stop().await;
}
