//! `agentid sts …` and `agentid up`.

use agentid_directory::audit::AuditQuery;
use agentid_directory::tenant_file::TenantFile;
use agentid_sts::Settings;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone)]
pub struct CommonArgs {
    /// Config file (YAML; sections server, tls, storage, tokens, keys, federation, client_assertion, audit).
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (database, master key, CA). Default: $AGENTID_HOME or ./.agentid
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default, in the data directory) or postgres://…
    #[arg(long)]
    database: Option<String>,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Socket address to listen on (default 0.0.0.0:8443).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Public base URL used in issuers and metadata (default derived from --listen).
    #[arg(long)]
    public_base_url: Option<String>,
    /// Tenant file(s) applied at start, before the listener opens.
    #[arg(long = "tenant-file")]
    tenant_files: Vec<PathBuf>,
    /// Serve plain HTTP. Tests only: Microsoft clients refuse http:// authorities.
    #[arg(long)]
    insecure_http: bool,
    /// PEM certificate chain to serve instead of the generated local CA's certificate.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum StsCommand {
    /// Serve the token service.
    Serve(ServeArgs),
    /// Create a new installation's tenant, administrator and admin client (safe to run twice).
    Init(crate::init::InitArgs),
    /// Make the directory match a tenant file (idempotent, one transaction).
    Apply {
        file: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
        /// Print the resulting ids as JSON.
        #[arg(long)]
        print_ids: bool,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// List audit events, newest first.
    Audit(AuditArgs),
    /// Measure signing rate, client_credentials throughput and flow latencies.
    Bench(crate::bench::BenchArgs),
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create the next signing key: published now, signing after the prepublish period.
    Rotate {
        #[command(flatten)]
        common: CommonArgs,
        /// Tenant id or domain (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Activate the new key at once and retire the old one (emergency rotation).
        #[arg(long)]
        now: bool,
        /// With --now: remove the old key at once, invalidating tokens it signed.
        #[arg(long, requires = "now")]
        revoke_old: bool,
    },
    /// List signing keys and their states.
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long)]
    tenant: Option<String>,
    /// RFC 3339 time, or a duration ago like 30m, 2h, 7d.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// Client appId.
    #[arg(long)]
    client: Option<String>,
    /// Agent identity id.
    #[arg(long)]
    agent: Option<String>,
    /// User principal name or object id.
    #[arg(long)]
    user: Option<String>,
    /// issued or refused.
    #[arg(long)]
    result: Option<String>,
    /// AADSTS code.
    #[arg(long)]
    code: Option<i64>,
    /// token or directory (Graph writes).
    #[arg(long)]
    category: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Print the delegation chain of this token (its `uti`) instead: sign-in, consent, workload
    /// credential, T1, T2/OBO and the gateway decisions made with it (docs/audit.md §7).
    #[arg(long, value_name = "UTI")]
    chain: Option<String>,
}

fn settings_for(common: &CommonArgs, listen: Option<SocketAddr>) -> anyhow::Result<Settings> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut s = agentid_sts::settings::load(
        common.config.as_deref(),
        &env,
        common.data_dir.as_deref(),
        listen,
    )?;
    if let Some(db) = &common.database {
        s.storage_url = db.clone();
    }
    Ok(s)
}

pub async fn run(cmd: StsCommand) -> anyhow::Result<()> {
    match cmd {
        StsCommand::Serve(a) => serve(a).await,
        StsCommand::Init(a) => crate::init::run(a).await,
        StsCommand::Apply {
            file,
            common,
            print_ids,
        } => apply(&file, &common, print_ids).await,
        StsCommand::Keys { command } => keys(command).await,
        StsCommand::Audit(a) => audit(a).await,
        StsCommand::Bench(a) => crate::bench::run(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let mut s = settings_for(&a.common, a.listen)?;
    if a.insecure_http {
        s.insecure_http = true;
        s.public_base_url = agentid_sts::settings::derive_base_url(&s.listen, true);
    }
    if let Some(u) = a.public_base_url {
        s.public_base_url = u.trim_end_matches('/').to_string();
    }
    if a.tls_cert.is_some() {
        s.tls_cert_file = a.tls_cert;
        s.tls_key_file = a.tls_key;
    }
    let files = a
        .tenant_files
        .iter()
        .map(|p| TenantFile::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    run_until_signal(s, files).await
}

async fn run_until_signal(s: Settings, files: Vec<TenantFile>) -> anyhow::Result<()> {
    let ca_out = s.tls_ca_out.clone();
    let running = agentid_sts::start(s, &files).await?;
    for r in &running.reports {
        eprintln!(
            "tenant {}: {} created, {} updated",
            r.tenant_id, r.created, r.updated
        );
        for g in &r.generated_secrets {
            eprintln!(
                "  generated secret for {} ({}), shown once: {}",
                g.application, g.app_id, g.value
            );
        }
    }
    remember_authority(&running).await;
    eprintln!("agentid STS ready at {}", running.base);
    for t in running.state.store.tenants().await? {
        eprintln!(
            "  authority {}/{}  (also {}/{})",
            running.base,
            t.id,
            running.base,
            t.name()
        );
    }
    if running.ca_pem.is_some() {
        eprintln!(
            "  CA certificate: {} (export REQUESTS_CA_BUNDLE={})",
            ca_out.display(),
            ca_out.display()
        );
    }
    crate::signal::terminate().await;
    let deadline = running.state.settings.drain_timeout;
    eprintln!(
        "draining: no new connections, in-flight requests get up to {} s",
        deadline.as_secs()
    );
    match running.drain(deadline).await {
        agentid_listener::Drained::Finished => eprintln!("stopped"),
        agentid_listener::Drained::DeadlinePassed { open } => {
            eprintln!("stopped; {open} connection(s) cut off at the drain deadline")
        }
    }
    Ok(())
}

async fn open(
    common: &CommonArgs,
) -> anyhow::Result<(
    Settings,
    agentid_directory::Store,
    agentid_directory::secrets::MasterKey,
)> {
    let s = settings_for(common, None)?;
    let (store, master) = agentid_sts::server::open_store(&s).await?;
    Ok((s, store, master))
}

async fn apply(file: &Path, common: &CommonArgs, print_ids: bool) -> anyhow::Result<()> {
    let f = TenantFile::load(file)?;
    let (_, store, _) = open(common).await?;
    let r = agentid_directory::tenant_file::apply(&store, &f).await?;
    eprintln!(
        "tenant {}: {} created, {} updated",
        r.tenant_id, r.created, r.updated
    );
    for g in &r.generated_secrets {
        eprintln!(
            "generated secret for {} ({}), shown once: {}",
            g.application, g.app_id, g.value
        );
    }
    if print_ids {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(())
}

async fn tenant_ids(
    store: &agentid_directory::Store,
    tenant: Option<&str>,
) -> anyhow::Result<Vec<uuid::Uuid>> {
    Ok(match tenant {
        Some(t) => vec![
            store
                .tenant_by_segment(t)
                .await?
                .with_context(|| format!("no tenant '{t}'"))?
                .id,
        ],
        None => store.tenants().await?.into_iter().map(|t| t.id).collect(),
    })
}

async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate {
            common,
            tenant,
            now,
            revoke_old,
        } => {
            let (s, store, master) = open(&common).await?;
            let ring = agentid_sts::keys::KeyRing::new(store.clone(), master);
            let t = chrono::Utc::now().timestamp();
            for id in tenant_ids(&store, tenant.as_deref()).await? {
                let kid = ring
                    .rotate(&id, t, s.key_prepublish, now, revoke_old, s.clock_skew)
                    .await?;
                if now {
                    println!("tenant {id}: key {kid} signs from now on");
                } else {
                    println!(
                        "tenant {id}: key {kid} published now, signs from {}",
                        fmt_time(t + s.key_prepublish)
                    );
                }
            }
        }
        KeysCommand::List { common } => {
            let (_, store, _) = open(&common).await?;
            let t = chrono::Utc::now().timestamp();
            println!(
                "{:<38} {:<44} {:<8} {:<21} {:<21}",
                "TENANT", "KID", "STATE", "ACTIVATES", "REMOVED AFTER"
            );
            let rows = store.signing_keys(None).await?;
            for r in &rows {
                let newest_active = rows
                    .iter()
                    .filter(|k| {
                        k.tenant_id == r.tenant_id
                            && k.activate_at <= t
                            && k.remove_after.is_none_or(|x| x > t)
                    })
                    .map(|k| k.activate_at)
                    .max();
                let state = if r.remove_after.is_some_and(|x| x <= t) {
                    "removed"
                } else if r.activate_at > t {
                    "pending"
                } else if Some(r.activate_at) == newest_active {
                    "active"
                } else {
                    "retired"
                };
                println!(
                    "{:<38} {:<44} {:<8} {:<21} {:<21}",
                    r.tenant_id,
                    r.kid,
                    state,
                    fmt_time(r.activate_at),
                    r.remove_after.map(fmt_time).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

fn fmt_time(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// RFC 3339, or `N{s,m,h,d}` ago.
fn parse_when(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().with_context(|| {
        format!("'{s}' is neither an RFC 3339 time nor a duration like 30m, 2h, 7d")
    })?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("'{s}': the unit must be s, m, h or d"),
    };
    Ok(chrono::Utc::now().timestamp() - secs)
}

async fn print_chain(
    store: &agentid_directory::Store,
    tenant: Option<&str>,
    uti: &str,
    json: bool,
) -> anyhow::Result<()> {
    let tenant = match tenant {
        Some(t) => uuid::Uuid::parse_str(t)?,
        None => agentid_directory::trail::tenant_of(store, uti)
            .await?
            .with_context(|| format!("no token or gateway decision has the uti '{uti}'"))?,
    };
    let chain = agentid_directory::trail::chain(store, &tenant, uti)
        .await?
        .with_context(|| format!("tenant {tenant} has no token '{uti}'"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&chain)?);
    } else {
        print!("{}", chain.to_text());
    }
    Ok(())
}

async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let (_, store, _) = open(&a.common).await?;
    let tenant_id = match &a.tenant {
        Some(t) => Some(
            store
                .tenant_by_segment(t)
                .await?
                .with_context(|| format!("no tenant '{t}'"))?
                .id
                .to_string(),
        ),
        None => None,
    };
    if let Some(uti) = &a.chain {
        return print_chain(&store, tenant_id.as_deref(), uti, a.json).await;
    }
    let q = AuditQuery {
        tenant_id,
        since: a.since.as_deref().map(parse_when).transpose()?,
        until: a.until.as_deref().map(parse_when).transpose()?,
        client_id: a.client,
        agent_id: a.agent,
        user: a.user,
        result: a.result,
        error_code: a.code,
        category: a.category,
        limit: a.limit,
        ..Default::default()
    };
    let events = store.audit_events(&q).await?;
    if a.json {
        for e in &events {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    println!(
        "{:<21} {:<8} {:<8} {:<20} {:<37} {:<37} {:<26} TOKEN",
        "TIME", "RESULT", "CODE", "GRANT", "CLIENT", "AGENT", "USER"
    );
    for e in &events {
        println!(
            "{:<21} {:<8} {:<8} {:<20} {:<37} {:<37} {:<26} {}",
            fmt_time(e.time),
            e.result,
            e.error_code.map(|c| c.to_string()).unwrap_or_default(),
            e.grant_type
                .as_deref()
                .map(|g| g.rsplit(':').next().unwrap_or(g))
                .unwrap_or(""),
            e.client_id.as_deref().unwrap_or(""),
            e.agent_id.as_deref().unwrap_or(""),
            e.user_principal_name.as_deref().unwrap_or(""),
            e.token_id.as_deref().unwrap_or(""),
        );
    }
    Ok(())
}

/// Records the authority of a single-tenant installation in `<data_dir>/state.json`, where
/// `agentid admin` finds its defaults.
async fn remember_authority(running: &agentid_sts::RunningSts) {
    let Ok(tenants) = running.state.store.tenants().await else {
        return;
    };
    let [t] = tenants.as_slice() else { return };
    let path = running.state.settings.data_dir.join("state.json");
    let mut state: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    state["tenantId"] = serde_json::json!(t.id);
    state["authority"] = serde_json::json!(format!("{}/{}", running.base, t.id));
    if let Ok(text) = serde_json::to_string_pretty(&state) {
        let _ = agentid_directory::secrets::write_private_file(&path, text.as_bytes());
    }
}
