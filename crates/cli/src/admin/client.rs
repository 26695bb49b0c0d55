//! The admin CLI's connection: where the authority and Graph are, the HTTP client, and the
//! signed-in administrator's token cache (0600).

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::PathBuf;

pub struct Conn {
    pub authority: String,
    pub graph: String,
    pub http: reqwest::Client,
    pub cache: PathBuf,
    pub client_id: String,
}

#[derive(clap::Args, Clone)]
pub struct ConnArgs {
    /// Authority: https://HOST:PORT/TENANT for agentid, https://login.microsoftonline.com/TENANT for Entra.
    /// Default: $AGENTID_AUTHORITY, else the local installation's state.
    #[arg(long, global = true)]
    pub authority: Option<String>,
    /// Graph base URL (default: the authority's host for agentid, https://graph.microsoft.com for Entra).
    #[arg(long, global = true)]
    pub graph: Option<String>,
    /// CA certificate to trust (default: the local installation's ca.pem if present).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Public client used to sign the administrator in (default: Microsoft Graph Command Line Tools).
    #[arg(long, global = true, default_value = agentid_claims::wellknown::GRAPH_CLI_APP_ID)]
    pub client_id: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

fn home() -> PathBuf {
    agentid_sts::settings::default_data_dir()
}

impl Conn {
    pub fn new(a: &ConnArgs) -> anyhow::Result<Conn> {
        let state: Option<Value> = std::fs::read_to_string(home().join("state.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let authority = a
            .authority
            .clone()
            .or_else(|| std::env::var("AGENTID_AUTHORITY").ok())
            .or_else(|| state.as_ref().and_then(|s| s["authority"].as_str().map(str::to_string)))
            .or_else(|| state.as_ref().and_then(|s| s["tenantId"].as_str()).map(|t| format!("https://localhost:8443/{t}")))
            .context("no authority: pass --authority https://HOST:PORT/TENANT (or run `agentid up` / `agentid sts init` here)")?
            .trim_end_matches('/')
            .to_string();
        let url = url::Url::parse(&authority)
            .with_context(|| format!("--authority {authority} is not a URL"))?;
        let entra = url
            .host_str()
            .is_some_and(|h| h.ends_with("login.microsoftonline.com"));
        let graph = a.graph.clone().unwrap_or_else(|| {
            if entra {
                "https://graph.microsoft.com".into()
            } else {
                format!("{}://{}", url.scheme(), url.authority())
            }
        });
        let mut b = reqwest::Client::builder().use_rustls_tls();
        let ca = a
            .ca_file
            .clone()
            .or_else(|| Some(home().join("ca.pem")).filter(|p| p.exists() && !entra));
        if let Some(ca) = ca {
            let pem =
                std::fs::read(&ca).with_context(|| format!("reading CA file {}", ca.display()))?;
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Conn {
            authority,
            graph: graph.trim_end_matches('/').into(),
            http: b.build()?,
            cache: home().join("admin-token.json"),
            client_id: a.client_id.clone(),
        })
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v2.0/token", self.authority)
    }

    /// POSTs to the token endpoint; OAuth errors become readable messages with their AADSTS code.
    pub async fn token(&self, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(self.token_url())
            .form(form)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.token_url()))?;
        let body: Value = r
            .json()
            .await
            .context("the token endpoint did not answer JSON")?;
        if let Some(e) = body["error"].as_str() {
            let desc = body["error_description"]
                .as_str()
                .unwrap_or("")
                .split(" Trace ID:")
                .next()
                .unwrap_or("");
            bail!("{e}: {desc}");
        }
        Ok(body)
    }

    /// The administrator's Graph token: cached, refreshed with its refresh token when expired.
    pub async fn admin_token(&self) -> anyhow::Result<String> {
        let cached: Value = std::fs::read_to_string(&self.cache)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .context("not signed in: run `agentid admin login`")?;
        if cached["authority"].as_str() != Some(&self.authority) {
            bail!(
                "signed in to {} — run `agentid admin login` for {}",
                cached["authority"].as_str().unwrap_or("?"),
                self.authority
            );
        }
        let now = chrono::Utc::now().timestamp();
        if cached["expiresAt"].as_i64().unwrap_or(0) > now + 60 {
            return Ok(cached["accessToken"]
                .as_str()
                .unwrap_or_default()
                .to_string());
        }
        let rt = cached["refreshToken"]
            .as_str()
            .context("the session expired: run `agentid admin login`")?;
        let scope = super::admin_scope();
        let t = self
            .token(&[
                ("grant_type", "refresh_token"),
                ("client_id", &self.client_id),
                ("refresh_token", rt),
                ("scope", &scope),
            ])
            .await?;
        self.save(&t)?;
        Ok(t["access_token"].as_str().unwrap_or_default().to_string())
    }

    pub fn save(&self, t: &Value) -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp();
        let v = json!({"authority": self.authority, "accessToken": t["access_token"], "refreshToken": t["refresh_token"],
            "expiresAt": now + t["expires_in"].as_i64().unwrap_or(0)});
        agentid_directory::secrets::write_private_file(
            &self.cache,
            serde_json::to_string(&v)?.as_bytes(),
        )?;
        Ok(())
    }

    /// A Graph call; Graph errors become messages with their code and what to do.
    pub async fn graph(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.graph);
        let mut r = self
            .http
            .request(method.parse()?, &url)
            .bearer_auth(token)
            .header("OData-Version", "4.0");
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = v["error"]["code"].as_str().unwrap_or("error");
            let msg = v["error"]["message"].as_str().unwrap_or(&text);
            let hint = match code {
                "Authorization_RequestDenied" => {
                    " (sign in as an administrator, or check the client's consented permissions)"
                }
                "InvalidAuthenticationToken" => " (run `agentid admin login`)",
                "Request_ResourceNotFound" => " (check the id)",
                _ => "",
            };
            bail!("{method} {path}: {} {code}: {msg}{hint}", status.as_u16());
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
}
