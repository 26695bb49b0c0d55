//! `agentid admin token …`: the agent's tokens as a blueprint would get them (T1 → T2, as itself
//! or on behalf of a user who signs in), and `decode` to explain one.

use super::client::Conn;
use anyhow::bail;
use serde_json::Value;

#[derive(clap::Args)]
pub(super) struct AgentCredential {
    /// The agent identity's id.
    #[arg(long)]
    agent: String,
    /// Its blueprint's appId.
    #[arg(long)]
    blueprint: String,
    /// The blueprint's client secret ($AGENTID_BLUEPRINT_SECRET).
    #[arg(
        long,
        env = "AGENTID_BLUEPRINT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    blueprint_secret: String,
    /// Target scope.
    #[arg(long, default_value = "https://graph.microsoft.com/.default")]
    scope: String,
    /// Print the token's explanation instead of the token.
    #[arg(long)]
    decode: bool,
}

#[derive(clap::Subcommand)]
pub(super) enum TokenCommand {
    /// The agent acting as itself: T1 (blueprint secret + fmi_path) → T2.
    Agent(AgentCredential),
    /// The agent acting for a user: the user signs in (device code, or --username for scripts)
    /// for the blueprint's API, then T1 → on-behalf-of.
    Obo {
        #[command(flatten)]
        cred: AgentCredential,
        #[arg(long)]
        username: Option<String>,
        /// The user's password ($AGENTID_USER_PASSWORD), with --username.
        #[arg(
            long,
            env = "AGENTID_USER_PASSWORD",
            hide_env_values = true,
            allow_hyphen_values = true
        )]
        user_password: Option<String>,
    },
    /// Show a token's claims and explain them.
    Decode { token: Option<String> },
}

fn show_token(t: &str, decode: bool) -> anyhow::Result<()> {
    if decode {
        let jwt = agentid_claims::UnverifiedJwt::parse(t)?;
        for line in agentid_claims::explain::explain(&jwt.claims, chrono::Utc::now().timestamp()) {
            println!("{line}");
        }
    } else {
        println!("{t}");
    }
    Ok(())
}

async fn t1(conn: &Conn, c: &AgentCredential) -> anyhow::Result<String> {
    let t = conn
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.blueprint),
            ("client_secret", &c.blueprint_secret),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", &c.agent),
        ])
        .await?;
    Ok(t["access_token"].as_str().unwrap_or_default().to_string())
}

/// A user token for the blueprint's API (Tc): device code in a browser, or the password grant.
async fn user_token(
    conn: &Conn,
    blueprint: &str,
    username: Option<String>,
    password: Option<String>,
) -> anyhow::Result<String> {
    let scope = format!("api://{blueprint}/access_as_user");
    let t = match (username, password) {
        (Some(u), Some(p)) => {
            conn.token(&[
                ("grant_type", "password"),
                ("client_id", &conn.client_id),
                ("username", &u),
                ("password", &p),
                ("scope", &scope),
            ])
            .await?
        }
        (Some(_), None) => bail!("--username needs $AGENTID_USER_PASSWORD"),
        _ => device_code_token(conn, &scope).await?,
    };
    Ok(t["access_token"].as_str().unwrap_or_default().to_string())
}

pub(super) async fn run(conn: &Conn, cmd: TokenCommand) -> anyhow::Result<()> {
    const ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    match cmd {
        TokenCommand::Agent(c) => {
            let t1 = t1(conn, &c).await?;
            let t2 = conn
                .token(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &c.agent),
                    ("scope", &c.scope),
                    ("client_assertion_type", ASSERTION),
                    ("client_assertion", &t1),
                ])
                .await?;
            show_token(t2["access_token"].as_str().unwrap_or_default(), c.decode)
        }
        TokenCommand::Obo {
            cred: c,
            username,
            user_password,
        } => {
            let tc = user_token(conn, &c.blueprint, username, user_password).await?;
            let t1 = t1(conn, &c).await?;
            let t = conn
                .token(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("client_id", &c.agent),
                    ("requested_token_use", "on_behalf_of"),
                    ("assertion", &tc),
                    ("scope", &c.scope),
                    ("client_assertion_type", ASSERTION),
                    ("client_assertion", &t1),
                ])
                .await?;
            show_token(t["access_token"].as_str().unwrap_or_default(), c.decode)
        }
        TokenCommand::Decode { token } => crate::decode::run(crate::decode::DecodeArgs::new(token)),
    }
}

/// The device-code flow with the admin's public client: prints where to sign in, polls until
/// the user has, and returns the token response.
pub(super) async fn device_code_token(conn: &Conn, scope: &str) -> anyhow::Result<Value> {
    let url = format!("{}/oauth2/v2.0/devicecode", conn.authority);
    let dc: Value = conn
        .http
        .post(&url)
        .form(&[("client_id", conn.client_id.as_str()), ("scope", scope)])
        .send()
        .await?
        .json()
        .await?;
    let Some(device_code) = dc["device_code"].as_str() else {
        bail!(
            "{}",
            dc["error_description"]
                .as_str()
                .unwrap_or("the devicecode endpoint refused the request")
        );
    };
    eprintln!("{}", dc["message"].as_str().unwrap_or_default());
    let interval = dc["interval"].as_u64().unwrap_or(5);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", conn.client_id.as_str()),
            ("device_code", device_code),
        ];
        let r: Value = conn
            .http
            .post(conn.token_url())
            .form(&form)
            .send()
            .await?
            .json()
            .await?;
        match r["error"].as_str() {
            None => return Ok(r),
            Some("authorization_pending" | "slow_down") => continue,
            Some(e) => bail!(
                "{e}: {}",
                r["error_description"]
                    .as_str()
                    .unwrap_or("")
                    .split(" Trace ID:")
                    .next()
                    .unwrap_or("")
            ),
        }
    }
}
