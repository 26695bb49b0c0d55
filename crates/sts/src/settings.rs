//! STS settings (docs/sts.md §2.3): a config file, overridden by `AGENTID_<SECTION>__<KEY>`
//! environment variables, overridden by command-line flags. The file shape is parsed once into
//! [`Settings`]; unknown keys are errors naming their path.

pub use crate::keys::KeyCacheLimits;
pub use agentid_directory::password_gate::PasswordLimits;
pub use agentid_listener::ConnectionLimits;
pub use ipnet::IpNet;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLifetime {
    /// Uniform whole seconds in [3600, 5399], like Entra.
    Random,
    Fixed(i64),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub public_base_url: String,
    pub insecure_http: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_out: PathBuf,
    pub tls_extra_sans: Vec<String>,
    pub storage_url: String,
    pub master_key_file: PathBuf,
    pub access_lifetime: AccessLifetime,
    pub exchange_lifetime: i64,
    pub refresh_inactivity: i64,
    pub refresh_reuse_grace: i64,
    pub clock_skew: i64,
    pub key_rotation_interval: i64,
    pub key_prepublish: i64,
    pub require_trusted_issuer: bool,
    pub metadata_cache_ttl: u64,
    pub single_use_assertions: bool,
    pub audit_retention: i64,
    /// PostgreSQL: audit rows wait for their WAL flush before the answer (`audit.durable_flush`;
    /// default off: committed, not flushed; docs/performance.md §3.2).
    pub audit_durable_flush: bool,
    /// Name of this replica in audit events.
    pub replica: String,
    /// Connection cap and the TLS-handshake and header-read deadlines of the listener.
    pub listener: ConnectionLimits,
    /// Peers whose `X-Forwarded-For` names the client (reverse proxies, ingress). Requests from
    /// any other peer are keyed on the peer address, whatever the header says.
    pub trusted_proxies: Vec<IpNet>,
    /// How many Argon2 password checks run and wait at once.
    pub password_checks: PasswordLimits,
    /// Bounds of the signing-key cache.
    pub key_cache: KeyCacheLimits,
    /// How long SIGTERM waits for in-flight requests (docs/architecture.md §7).
    pub drain_timeout: Duration,
    /// Fetching MCP clients' metadata documents (docs/sts.md §16.4).
    pub client_metadata: ClientMetadataSettings,
}

/// How client ID metadata documents are fetched (docs/sts.md §16.4).
#[derive(Debug, Clone, Default)]
pub struct ClientMetadataSettings {
    /// Documents on loopback, private and link-local addresses may be fetched. Off by default:
    /// only tests and local setups serve client documents there.
    pub allow_private_hosts: bool,
    /// PEM CA certificates that replace the public roots for these fetches.
    pub ca_file: Option<PathBuf>,
}

impl Settings {
    /// Defaults for a data directory and listen address (docs/sts.md §2.3).
    pub fn new(data_dir: &Path, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            listen,
            public_base_url: derive_base_url(&listen, false),
            insecure_http: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_out: data_dir.join("ca.pem"),
            tls_extra_sans: vec![],
            storage_url: format!("sqlite://{}", data_dir.join("agentid.db").display()),
            master_key_file: data_dir.join("master.key"),
            access_lifetime: AccessLifetime::Random,
            exchange_lifetime: 900,
            refresh_inactivity: 90 * 86400,
            refresh_reuse_grace: 120,
            clock_skew: 300,
            key_rotation_interval: 30 * 86400,
            key_prepublish: 48 * 3600,
            require_trusted_issuer: false,
            metadata_cache_ttl: 600,
            single_use_assertions: false,
            audit_retention: 90 * 86400,
            audit_durable_flush: false,
            replica: hostname(),
            listener: ConnectionLimits::default(),
            trusted_proxies: vec![],
            password_checks: PasswordLimits::from_memory(),
            key_cache: KeyCacheLimits::default(),
            drain_timeout: Duration::from_secs(20),
            client_metadata: ClientMetadataSettings::default(),
        }
    }

    /// Re-derives the base URL after `listen` or `insecure_http` changed, unless set explicitly.
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self.public_base_url = derive_base_url(&listen, self.insecure_http);
        self
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agentid".into())
}

/// `https://{host}:{port}` with unspecified addresses shown as `localhost`.
pub fn derive_base_url(listen: &SocketAddr, insecure_http: bool) -> String {
    let scheme = if insecure_http { "http" } else { "https" };
    let host = match listen.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("{scheme}://{host}:{}", listen.port())
}

// ---- the config file -------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    tls: TlsSection,
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    tokens: TokensSection,
    #[serde(default)]
    keys: KeysSection,
    #[serde(default)]
    federation: FederationSection,
    #[serde(default)]
    client_assertion: ClientAssertionSection,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    signin: SigninSection,
    #[serde(default)]
    client_metadata: ClientMetadataSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMetadataSection {
    allow_private_hosts: Option<bool>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<SocketAddr>,
    public_base_url: Option<String>,
    insecure_http: Option<bool>,
    data_dir: Option<PathBuf>,
    max_connections: Option<usize>,
    /// Seconds.
    header_read_timeout: Option<u64>,
    /// Seconds.
    tls_handshake_timeout: Option<u64>,
    /// Seconds a connection may sit with no request in progress and no byte moving.
    idle_timeout: Option<u64>,
    max_header_bytes: Option<u64>,
    /// IP addresses or CIDR ranges.
    trusted_proxies: Option<Vec<String>>,
    /// Seconds SIGTERM waits for in-flight requests.
    drain_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigninSection {
    max_concurrent_password_checks: Option<usize>,
    password_check_queue: Option<usize>,
    /// Milliseconds a sign-in waits for a password-check slot before 429.
    password_check_wait_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ca_out: Option<PathBuf>,
    extra_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    url: Option<String>,
    master_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensSection {
    access_lifetime: Option<serde_yaml_ng::Value>,
    exchange_lifetime: Option<i64>,
    refresh_inactivity: Option<i64>,
    refresh_reuse_grace: Option<i64>,
    clock_skew: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysSection {
    rotation_interval: Option<i64>,
    prepublish: Option<i64>,
    max_cached_tenants: Option<u64>,
    /// Seconds after which loaded signing keys are read again from the database.
    reload_interval: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FederationSection {
    require_trusted_issuer: Option<bool>,
    metadata_cache_ttl: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientAssertionSection {
    single_use: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    retention: Option<i64>,
    durable_flush: Option<bool>,
}

/// Builds settings from an optional config file and the environment; flags are applied by the
/// caller afterwards. `data_dir` and `listen` are the command line's (or defaults).
pub fn load(
    config_file: Option<&Path>,
    env: &[(String, String)],
    data_dir: Option<&Path>,
    listen: Option<SocketAddr>,
) -> Result<Settings, SettingsError> {
    let mut doc = match config_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                path: p.display().to_string(),
                source,
            })?;
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).map_err(|e| {
                SettingsError::Invalid {
                    path: p.display().to_string(),
                    message: e.to_string(),
                }
            })?
        }
        None => serde_yaml_ng::Value::Mapping(Default::default()),
    };
    if doc.is_null() {
        doc = serde_yaml_ng::Value::Mapping(Default::default());
    }
    // AGENTID_<SECTION>__<KEY>: values are read as YAML scalars so numbers and booleans type-check.
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("AGENTID_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        let key = key.to_ascii_lowercase();
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(v).unwrap_or(serde_yaml_ng::Value::String(v.clone()));
        let map = doc.as_mapping_mut().expect("mapping");
        let sec = map
            .entry(serde_yaml_ng::Value::String(section.clone()))
            .or_insert_with(|| serde_yaml_ng::Value::Mapping(Default::default()));
        if let Some(m) = sec.as_mapping_mut() {
            m.insert(serde_yaml_ng::Value::String(key), value);
        }
    }
    let file: ConfigFile =
        serde_path_to_error::deserialize(doc).map_err(|e| SettingsError::Invalid {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;

    let data_dir = data_dir
        .map(Path::to_path_buf)
        .or(file.server.data_dir.clone())
        .unwrap_or_else(default_data_dir);
    let listen = listen
        .or(file.server.listen)
        .unwrap_or_else(|| "0.0.0.0:8443".parse().expect("literal"));
    let mut s = Settings::new(&data_dir, listen);
    if let Some(v) = file.server.insecure_http {
        s.insecure_http = v;
        s.public_base_url = derive_base_url(&listen, v);
    }
    if let Some(u) = file.server.public_base_url {
        s.public_base_url = u.trim_end_matches('/').to_string();
    }
    s.tls_cert_file = file.tls.cert_file;
    s.tls_key_file = file.tls.key_file;
    if let Some(p) = file.tls.ca_out {
        s.tls_ca_out = p;
    }
    s.tls_extra_sans = file.tls.extra_sans.unwrap_or_default();
    if let Some(u) = file.storage.url {
        s.storage_url = u;
    }
    if let Some(p) = file.storage.master_key_file {
        s.master_key_file = p;
    }
    if let Some(v) = file.tokens.access_lifetime {
        s.access_lifetime = match v {
            serde_yaml_ng::Value::String(ref r) if r == "random" => AccessLifetime::Random,
            serde_yaml_ng::Value::Number(ref n)
                if n.as_i64().is_some_and(|n| (300..=86400).contains(&n)) =>
            {
                AccessLifetime::Fixed(n.as_i64().expect("checked"))
            }
            _ => {
                return Err(SettingsError::Invalid {
                    path: "tokens.access_lifetime".into(),
                    message: "must be \"random\" or a number of seconds between 300 and 86400"
                        .into(),
                });
            }
        };
    }
    macro_rules! set {
        ($field:ident, $v:expr) => {
            if let Some(v) = $v {
                s.$field = v;
            }
        };
    }
    set!(exchange_lifetime, file.tokens.exchange_lifetime);
    set!(refresh_inactivity, file.tokens.refresh_inactivity);
    set!(refresh_reuse_grace, file.tokens.refresh_reuse_grace);
    set!(clock_skew, file.tokens.clock_skew);
    set!(key_rotation_interval, file.keys.rotation_interval);
    set!(key_prepublish, file.keys.prepublish);
    set!(
        require_trusted_issuer,
        file.federation.require_trusted_issuer
    );
    set!(metadata_cache_ttl, file.federation.metadata_cache_ttl);
    set!(single_use_assertions, file.client_assertion.single_use);
    set!(audit_retention, file.audit.retention);
    set!(audit_durable_flush, file.audit.durable_flush);
    if let Some(v) = file.client_metadata.allow_private_hosts {
        s.client_metadata.allow_private_hosts = v;
    }
    s.client_metadata.ca_file = file.client_metadata.ca_file;

    let positive = |v: Option<u64>, path: &str| -> Result<Option<u64>, SettingsError> {
        match v {
            Some(0) => Err(SettingsError::Invalid {
                path: path.into(),
                message: "must be greater than 0".into(),
            }),
            v => Ok(v),
        }
    };
    if let Some(n) = positive(
        file.server.max_connections.map(|n| n as u64),
        "server.max_connections",
    )? {
        s.listener.max_connections = n as usize;
    }
    if let Some(secs) = positive(
        file.server.header_read_timeout,
        "server.header_read_timeout",
    )? {
        s.listener.header_read_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = positive(
        file.server.tls_handshake_timeout,
        "server.tls_handshake_timeout",
    )? {
        s.listener.tls_handshake_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = positive(file.server.drain_timeout, "server.drain_timeout")? {
        s.drain_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = positive(file.server.idle_timeout, "server.idle_timeout")? {
        s.listener.idle_timeout = Duration::from_secs(secs);
    }
    if let Some(n) = file.server.max_header_bytes {
        if n < agentid_listener::MIN_HEADER_BYTES as u64 {
            return Err(SettingsError::Invalid {
                path: "server.max_header_bytes".into(),
                message: format!("must be at least {}", agentid_listener::MIN_HEADER_BYTES),
            });
        }
        s.listener.max_header_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    for (i, p) in file
        .server
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        s.trusted_proxies
            .push(parse_proxy(p).ok_or_else(|| SettingsError::Invalid {
                path: format!("server.trusted_proxies[{i}]"),
                message: format!("'{p}' is not an IP address or CIDR range"),
            })?);
    }
    if let Some(n) = positive(
        file.signin.max_concurrent_password_checks.map(|n| n as u64),
        "signin.max_concurrent_password_checks",
    )? {
        s.password_checks = PasswordLimits::with_concurrency(n as usize);
    }
    if let Some(n) = file.signin.password_check_queue {
        s.password_checks.max_waiting = n;
    }
    if let Some(n) = positive(file.keys.max_cached_tenants, "keys.max_cached_tenants")? {
        s.key_cache.max_tenants = n;
    }
    if let Some(secs) = positive(file.keys.reload_interval, "keys.reload_interval")? {
        s.key_cache.reload_every = Duration::from_secs(secs);
    }
    if let Some(ms) = file.signin.password_check_wait_ms {
        s.password_checks.max_wait = Duration::from_millis(ms);
    }
    Ok(s)
}

/// `10.0.0.0/8`, `2001:db8::/32` or one address.
pub fn parse_proxy(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// `$AGENTID_HOME` or `./.agentid`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("AGENTID_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".agentid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_unknown_keys_fail() {
        let env = vec![(
            "AGENTID_TOKENS__ACCESS_LIFETIME".to_string(),
            "3600".to_string(),
        )];
        let s = load(
            None,
            &env,
            Some(Path::new("/tmp/x")),
            Some("127.0.0.1:9443".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(s.access_lifetime, AccessLifetime::Fixed(3600));
        assert_eq!(s.public_base_url, "https://127.0.0.1:9443");
        let env = vec![("AGENTID_TOKENS__BOGUS".to_string(), "1".to_string())];
        let e = load(None, &env, None, None).unwrap_err().to_string();
        assert!(e.contains("tokens") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn listener_proxies_and_password_limits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sts.yaml");
        std::fs::write(
            &f,
            "server:\n  max_connections: 50\n  header_read_timeout: 5\n  trusted_proxies: [10.0.0.0/8, '2001:db8::1']\nsignin:\n  max_concurrent_password_checks: 3\n  password_check_wait_ms: 100\n",
        )
        .unwrap();
        let s = load(Some(&f), &[], None, None).unwrap();
        assert_eq!(s.listener.max_connections, 50);
        assert_eq!(s.listener.header_read_timeout, Duration::from_secs(5));
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.password_checks.max_concurrent, 3);
        assert_eq!(s.password_checks.max_waiting, 12);
        assert_eq!(s.password_checks.max_wait, Duration::from_millis(100));
        std::fs::write(&f, "server:\n  trusted_proxies: [10.0.0.0/33]\n").unwrap();
        let e = load(Some(&f), &[], None, None).unwrap_err().to_string();
        assert!(e.contains("server.trusted_proxies[0]"), "{e}");
        std::fs::write(&f, "signin:\n  max_concurrent_password_checks: 0\n").unwrap();
        let e = load(Some(&f), &[], None, None).unwrap_err().to_string();
        assert!(e.contains("signin.max_concurrent_password_checks"), "{e}");
    }

    #[test]
    fn unspecified_listen_shows_localhost() {
        assert_eq!(
            derive_base_url(&"0.0.0.0:8443".parse().unwrap(), false),
            "https://localhost:8443"
        );
    }
}
