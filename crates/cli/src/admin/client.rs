//! The admin CLI's connection: the shared Graph client (agentid-graphclient) plus the
//! signed-in administrator's token cache (0600).

use agentid_graphclient::GraphClient;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::PathBuf;

pub struct Conn {
    pub client: GraphClient,
    pub cache: PathBuf,
    pub client_id: String,
}

/// The Graph client's calls (`conn.graph(…)`, `conn.token(…)`) and fields read through.
impl std::ops::Deref for Conn {
    type Target = GraphClient;
    fn deref(&self) -> &GraphClient {
        &self.client
    }
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
            .context("no authority: pass --authority https://HOST:PORT/TENANT (or run `agentid up` / `agentid sts init` here)")?;
        let url = url::Url::parse(authority.trim_end_matches('/'))
            .with_context(|| format!("--authority {authority} is not a URL"))?;
        let entra = agentid_graphclient::is_entra(&url);
        let ca = a
            .ca_file
            .clone()
            .or_else(|| Some(home().join("ca.pem")).filter(|p| p.exists() && !entra));
        let pem = match ca {
            Some(ca) => Some(
                std::fs::read(&ca).with_context(|| format!("reading CA file {}", ca.display()))?,
            ),
            None => None,
        };
        Ok(Conn {
            client: GraphClient::new(&authority, a.graph.as_deref(), pem.as_deref())?,
            cache: home().join("admin-token.json"),
            client_id: a.client_id.clone(),
        })
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
}
