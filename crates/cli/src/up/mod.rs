//! `agentid up`: the whole system on one machine (docs/agent.md, "How agentid up is wired"): the STS
//! with the demo tenant, the local workload issuer, the token sidecar authenticating with it,
//! the demo MCP server, the offline model and the gateway — all on loopback, all in this process.

mod story;
mod workload;

use agentid_directory::tenant_file::TenantFile;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEMO_TENANT: &str = include_str!("../../../../examples/up-tenant.yaml");
const GATEWAY_TEMPLATE: &str = include_str!("../../../../examples/gateway.yaml");

pub const TENANT_ID: &str = "0a1f25a9-15b6-4302-87d7-ef0c38bdedc5";
pub const BLUEPRINT: &str = "7583752b-1579-41a2-a065-93ba9f14dff5";
pub const AGENT: &str = "c228e427-7816-4caa-a04f-7353b3a519f7";
pub const AUTONOMOUS_AGENT: &str = "290517f2-66f5-45bc-9cf4-2028e972985e";
pub const MCP_APP: &str = "1bc7902d-ee63-4134-84d4-e2b04e0c42a0";
pub const MCP_SECRET: &str = "demo-mcp-secret-change-me";
pub const DEMO_USER: &str = "demo@agentid.local";
pub const DEMO_PASSWORD: &str = "agentid-demo-password";
/// The console's demo administrator (examples/up-tenant.yaml, docs/console.md §2).
pub const DEMO_ADMIN: &str = "admin@agentid.local";
pub const DEMO_ADMIN_PASSWORD: &str = "agentid-admin-password";

#[derive(clap::Args)]
pub struct UpArgs {
    /// State directory. Default: $AGENTID_HOME or ./.agentid
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run the scripted end-to-end story (sign in → T1 → OBO → LLM → MCP allowed → autonomous
    /// denied → audit trail), print it, and stop.
    #[arg(long)]
    demo: bool,
    /// STS port (HTTPS).
    #[arg(long, default_value_t = 8443)]
    sts_port: u16,
    /// Gateway port.
    #[arg(long, default_value_t = 3000)]
    gateway_port: u16,
    /// Gateway admin port (config_dump, audit/events).
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// Gateway metrics port.
    #[arg(long, default_value_t = 15020)]
    metrics_port: u16,
    /// Token sidecar port.
    #[arg(long, default_value_t = 5000)]
    sidecar_port: u16,
    /// Demo MCP server port.
    #[arg(long, default_value_t = 8001)]
    mcp_port: u16,
    /// Offline model port.
    #[arg(long, default_value_t = 8002)]
    model_port: u16,
}

/// The running parts, for the story and for shutdown.
pub struct Parts {
    pub dir: PathBuf,
    pub sts: agentid_sts::RunningSts,
    pub authority: String,
    pub ca_file: PathBuf,
    pub ca_pem: Option<String>,
    pub sidecar: agentid_sidecar::RunningSidecar,
    pub sidecar_url: String,
    pub mcp: agentid_demo::RunningServer,
    pub model: agentid_demo::RunningServer,
    pub gateway: agentid_gateway::RunningGateway,
    pub gateway_url: String,
    pub admin_url: String,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Every port is free before anything starts, or the user learns which flag moves it.
fn check_ports(a: &UpArgs) -> anyhow::Result<()> {
    for (port, flag) in [
        (a.sts_port, "--sts-port"),
        (a.gateway_port, "--gateway-port"),
        (a.admin_port, "--admin-port"),
        (a.metrics_port, "--metrics-port"),
        (a.sidecar_port, "--sidecar-port"),
        (a.mcp_port, "--mcp-port"),
        (a.model_port, "--model-port"),
    ] {
        if let Err(e) = std::net::TcpListener::bind(loopback(port)) {
            anyhow::bail!(
                "port {port} on 127.0.0.1 is not available ({e}); choose another with {flag} PORT"
            );
        }
    }
    Ok(())
}

fn state_dir(a: &UpArgs) -> PathBuf {
    a.data_dir
        .clone()
        .unwrap_or_else(agentid_sts::settings::default_data_dir)
}

/// Writes `name` into the state directory unless the user already has one (theirs to edit).
fn write_once(dir: &Path, name: &str, content: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.exists() {
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

pub async fn start(a: &UpArgs) -> anyhow::Result<Parts> {
    check_ports(a)?;
    let dir = state_dir(a);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;

    // 1. The local workload issuer and its first token.
    let issuer = workload::WorkloadIssuer::open(&dir)?;
    issuer.write_token()?;

    // 2. The STS with the demo tenant (which trusts the workload issuer's stored JWKS).
    let tenant_path = write_once(&dir, "demo-tenant.yaml", DEMO_TENANT)?;
    let tenant_text = std::fs::read_to_string(&tenant_path)?;
    let tenant = TenantFile::parse(&tenant_text, &dir)
        .with_context(|| format!("{}", tenant_path.display()))?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let settings = agentid_sts::settings::load(None, &env, Some(&dir), Some(loopback(a.sts_port)))?;
    let sts = agentid_sts::start(settings, &[tenant])
        .await
        .context("starting the STS")?;
    let authority = format!("{}/{TENANT_ID}", sts.base);
    let ca_file = dir.join("ca.pem");
    let ca_pem = sts.ca_pem.clone();

    // 3. The demo MCP server and the offline model, both checking the bearer they receive.
    let discovered = agentid_demo::discover(&authority, ca_pem.as_deref()).await?;
    let check = |audience: &str| agentid_demo::TokenCheck {
        jwks_url: discovered.jwks_url.clone(),
        issuer: discovered.issuer.clone(),
        audience: audience.to_string(),
        ca_pem: ca_pem.clone(),
    };
    let mcp = agentid_demo::start_mcp(agentid_demo::McpSettings {
        listen: loopback(a.mcp_port),
        check: check(&format!("api://{MCP_APP}")),
        token_endpoint: discovered.token_endpoint.clone(),
        graph_base: sts.base.clone(),
        client_id: MCP_APP.to_string(),
        client_secret: MCP_SECRET.to_string(),
        ca_pem: ca_pem.clone(),
    })
    .await?;
    let model = agentid_demo::start_model(agentid_demo::ModelSettings {
        listen: loopback(a.model_port),
        check: Some(check("https://cognitiveservices.azure.com")),
    })
    .await?;

    // 4. The token sidecar, as the blueprint, with the workload token as its credential.
    let sidecar_env: Vec<(String, String)> = [
        ("AzureAd__Instance", format!("{}/", sts.base)),
        ("AzureAd__TenantId", TENANT_ID.to_string()),
        ("AzureAd__ClientId", BLUEPRINT.to_string()),
        (
            "AzureAd__ClientCredentials__0__SourceType",
            "SignedAssertionFilePath".to_string(),
        ),
        (
            "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath",
            issuer.token_path.display().to_string(),
        ),
        (
            "DownstreamApis__openai__Scopes__0",
            "https://cognitiveservices.azure.com/.default".to_string(),
        ),
        (
            "DownstreamApis__mcp__Scopes__0",
            format!("api://{MCP_APP}/.default"),
        ),
        (
            "DownstreamApis__graph__Scopes__0",
            "https://graph.microsoft.com/.default".to_string(),
        ),
        ("DownstreamApis__graph__RequestAppToken", "true".to_string()),
        (
            "Sidecar__ListenUrl",
            format!("http://127.0.0.1:{}", a.sidecar_port),
        ),
        ("Sidecar__HealthListenUrl", "off".to_string()),
        // The kill switch (docs/sidecar.md §18) is enforced by up's gateway, which audits every
        // refusal into the trail; a sidecar that refused first would stop the call before any
        // audited decision, so up leaves the sidecar's own feed check off.
        ("Sidecar__Revocation__Enabled", "false".to_string()),
        ("Sidecar__ExtraCaBundlePath", ca_file.display().to_string()),
        ("Sidecar__AllowedAgentIdentities__0", AGENT.to_string()),
        (
            "Sidecar__AllowedAgentIdentities__1",
            AUTONOMOUS_AGENT.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sidecar_config =
        agentid_sidecar::config::load(&agentid_sidecar::ConfigSources::from_vars(&sidecar_env))
            .map_err(|e| anyhow::anyhow!("sidecar configuration: {e}"))?;
    let sidecar = agentid_sidecar::start(sidecar_config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the sidecar: {e}"))?;
    let sidecar_url = sidecar.url();

    // 5. The gateway, from the state directory's copy of examples/gateway.yaml.
    let gateway_text = GATEWAY_TEMPLATE
        .replace("__STS__", &sts.base)
        .replace("__MODEL__", &model.addr.to_string())
        .replace("__MCP__", &mcp.addr.to_string())
        .replace("__GATEWAY_PORT__", &a.gateway_port.to_string())
        .replace("__ADMIN_PORT__", &a.admin_port.to_string())
        .replace("__METRICS_PORT__", &a.metrics_port.to_string());
    let gateway_path = write_once(&dir, "gateway.yaml", &gateway_text)?;
    let gateway = agentid_gateway::start(agentid_gateway::Options {
        source: agentid_gateway::Source::File(gateway_path.clone()),
        extra_roots: vec![ca_file.clone()],
        ephemeral_ports: false,
        // Everything `up` runs shares its one runtime.
        serving_threads: 0,
    })
    .await
    .with_context(|| format!("starting the gateway from {}", gateway_path.display()))?;
    let gateway_url = format!("http://{}", gateway.addr(a.gateway_port));
    let admin_url = gateway
        .admin
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();

    // MCP clients on this machine (docs/sts.md §16): the gateway's /mcp is a resource of the
    // demo MCP app, and clients register themselves (rate limited) when they first connect.
    {
        let store = &sts.state.store;
        let tid: uuid::Uuid = TENANT_ID.parse().expect("constant");
        let app: uuid::Uuid = MCP_APP.parse().expect("constant");
        for host in ["127.0.0.1", "localhost"] {
            let resource = format!("http://{host}:{}/mcp", a.gateway_port);
            store.set_protected_resource(&tid, &resource, &app).await?;
        }
        let mode = agentid_directory::mcp_clients::RegistrationMode::Open;
        let now = chrono::Utc::now().timestamp();
        store.set_registration_policy(&tid, mode, None, now).await?;
    }

    // 6. The agent's configuration, so `agentid agent chat` just works.
    let agent_yaml = format!(
        "# Written by `agentid up`; `agentid agent` reads it when given no other configuration.\n\
         authority: {base}\n\
         tenant: {TENANT_ID}\n\
         blueprint: {BLUEPRINT}\n\
         agentId: {AGENT}\n\
         autonomousAgentId: {AUTONOMOUS_AGENT}\n\
         tokens: sidecar\n\
         sidecarUrl: {sidecar_url}\n\
         llm: {{kind: openai, baseUrl: {gateway_url}/llm/v1, model: agentid-offline}}\n\
         mcp: [{{name: gateway, url: {gateway_url}/mcp, api: mcp, scope: \"api://{MCP_APP}/.default\"}}]\n\
         # --tokens direct: the agent presents the workload token itself (T1 → T2, no sidecar).\n\
         federatedTokenFile: workload-token\n\
         caFile: ca.pem\n\
         username: {DEMO_USER}\n",
        base = sts.base,
    );
    write_once(&dir, "agent.yaml", &agent_yaml)?;

    // The workload token is re-minted every 30 minutes, like kubelet's projected tokens.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30 * 60)).await;
            if let Err(e) = issuer.write_token() {
                tracing::error!("re-minting the workload token failed: {e}");
            }
        }
    });

    Ok(Parts {
        dir,
        sts,
        authority,
        ca_file,
        ca_pem,
        sidecar,
        sidecar_url,
        mcp,
        model,
        gateway,
        gateway_url,
        admin_url,
    })
}

impl Parts {
    pub async fn stop(self) {
        self.gateway.shutdown(Duration::from_secs(5)).await;
        self.sidecar.shutdown();
        self.mcp.shutdown().await;
        self.model.shutdown().await;
        self.sts.shutdown();
    }

    fn summary(&self) -> String {
        format!(
            "\nagentid is up (state in {dir})\n\n\
             \x20 STS (Entra-compatible)   {authority}\n\
             \x20 token sidecar            {sidecar}\n\
             \x20 gateway                  {gateway}/llm  {gateway}/mcp\n\
             \x20 gateway audit            {admin}/audit/events\n\
             \x20 demo MCP server          http://{mcp}/mcp\n\
             \x20 offline model            http://{model}/v1\n\
             \x20 CA certificate           {ca}\n\
             \x20 web console              {console}/console\n\n\
             Demo user: {DEMO_USER} / {DEMO_PASSWORD}\n\
             Console administrator: {DEMO_ADMIN} / {DEMO_ADMIN_PASSWORD}\n\n\
             Next, in another terminal in this directory:\n\
             \x20 AGENTID_AGENT_PASSWORD={DEMO_PASSWORD} agentid agent chat     (or: agentid agent login)\n\
             Or connect any MCP client (MCP Inspector, an IDE, …) to {gateway}/mcp: it registers\n\
             \x20 itself and opens the STS sign-in in the browser (trust {ca} first); sign in as\n\
             \x20 the demo user and call the tools as yourself (docs/gateway.md §18).\n\
             \x20 (`agentid up --demo`, instead of `up`, tells the scripted story and stops)\n\n\
             Ctrl-C stops everything.\n",
            dir = self.dir.display(),
            authority = self.authority,
            sidecar = self.sidecar_url,
            gateway = self.gateway_url,
            admin = self.admin_url,
            mcp = self.mcp.addr,
            model = self.model.addr,
            ca = self.ca_file.display(),
            console = self
                .authority
                .trim_end_matches(TENANT_ID)
                .trim_end_matches('/'),
        )
    }
}

pub async fn run(a: UpArgs) -> anyhow::Result<()> {
    let parts = start(&a).await?;
    if a.demo {
        let result = story::run(&parts).await;
        parts.stop().await;
        return result;
    }
    eprintln!("{}", parts.summary());
    crate::signal::terminate().await;
    eprintln!("stopping…");
    parts.stop().await;
    Ok(())
}
