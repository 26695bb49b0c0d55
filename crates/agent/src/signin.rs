//! The user's sign-in: device code (RFC 8628) or, for scripts and tests, the password grant;
//! the refresh token kept in a 0600 cache file; silent refresh afterwards.

use crate::explain::describe_sts_error;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::Mutex;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Refresh this long before the access token expires.
const MARGIN: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("not signed in: run `agentid agent login` first")]
    NotSignedIn,
    #[error("cannot reach the authority at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the authority refused the sign-in: {0}")]
    Refused(String),
    #[error("the device code expired before the sign-in was completed")]
    Expired,
    #[error("the user declined the sign-in")]
    Declined,
    #[error("the authority's answer is not understood: {0}")]
    BadResponse(String),
    #[error("token cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
}

/// Where and as whom the user signs in.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    pub token_endpoint: String,
    pub device_endpoint: String,
    pub client_id: String,
    pub scope: String,
    pub cache_file: PathBuf,
}

/// What the device-code endpoint tells the user to do.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// One cached sign-in, as stored in the cache file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    token_endpoint: String,
    client_id: String,
    scope: String,
    refresh_token: String,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    #[serde(default)]
    entries: Vec<CacheEntry>,
}

/// The signed-in user's token source: hands out a valid Tc, refreshing it as needed.
pub struct UserSession {
    http: reqwest::Client,
    settings: SignInSettings,
    current: Mutex<Option<CacheEntry>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl UserSession {
    pub fn new(http: reqwest::Client, settings: SignInSettings) -> Self {
        Self {
            http,
            settings,
            current: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &SignInSettings {
        &self.settings
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<(u16, Value), SignInError> {
        let resp = self
            .http
            .post(url)
            .form(form)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| SignInError::Unreachable {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .json::<Value>()
            .await
            .map_err(|e| SignInError::BadResponse(format!("HTTP {status}, not JSON: {e}")))?;
        Ok((status, body))
    }

    /// Stores a token response as the current sign-in and writes the cache file.
    async fn accept(&self, body: &Value) -> Result<String, SignInError> {
        let access = body["access_token"]
            .as_str()
            .ok_or_else(|| SignInError::BadResponse("no access_token".into()))?
            .to_string();
        let expires_in = body["expires_in"].as_i64().unwrap_or(3600);
        let previous = self.current.lock().await.clone();
        let refresh = body["refresh_token"]
            .as_str()
            .map(str::to_string)
            .or(previous.map(|p| p.refresh_token))
            .ok_or_else(|| {
                SignInError::BadResponse("no refresh_token (was offline_access granted?)".into())
            })?;
        let entry = CacheEntry {
            token_endpoint: self.settings.token_endpoint.clone(),
            client_id: self.settings.client_id.clone(),
            scope: self.settings.scope.clone(),
            refresh_token: refresh,
            access_token: Some(access.clone()),
            expires_at: now() + expires_in,
        };
        self.save(&entry)?;
        *self.current.lock().await = Some(entry);
        Ok(access)
    }

    fn refused(body: &Value) -> SignInError {
        SignInError::Refused(describe_sts_error(
            body["error"].as_str().unwrap_or("error"),
            body["error_description"].as_str().unwrap_or(""),
        ))
    }

    /// Password grant (scripts and tests only).
    pub async fn login_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, SignInError> {
        let s = &self.settings;
        let (status, body) = self
            .post(
                &s.token_endpoint,
                &[
                    ("grant_type", "password"),
                    ("client_id", &s.client_id),
                    ("username", username),
                    ("password", password),
                    ("scope", &s.scope),
                ],
            )
            .await?;
        if status != 200 {
            return Err(Self::refused(&body));
        }
        self.accept(&body).await
    }

    /// Starts a device-code sign-in; show the result to the user, then [`Self::poll_device`].
    pub async fn start_device(&self) -> Result<DeviceCode, SignInError> {
        let s = &self.settings;
        let (status, body) = self
            .post(
                &s.device_endpoint,
                &[("client_id", &s.client_id), ("scope", &s.scope)],
            )
            .await?;
        if status != 200 {
            return Err(Self::refused(&body));
        }
        serde_json::from_value(body).map_err(|e| SignInError::BadResponse(e.to_string()))
    }

    /// Polls the token endpoint per RFC 8628 §3.4–3.5: wait `interval` (default 5 s) between
    /// polls, add 5 s on `slow_down`, stop on expiry or denial.
    pub async fn poll_device(&self, code: &DeviceCode) -> Result<String, SignInError> {
        let s = &self.settings;
        let mut interval = code.interval.unwrap_or(5).max(1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(code.expires_in.max(1));
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(SignInError::Expired);
            }
            let (status, body) = self
                .post(
                    &s.token_endpoint,
                    &[
                        ("grant_type", DEVICE_GRANT),
                        ("client_id", &s.client_id),
                        ("device_code", &code.device_code),
                    ],
                )
                .await?;
            if status == 200 {
                return self.accept(&body).await;
            }
            match body["error"].as_str() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval += 5,
                Some("expired_token") | Some("code_expired") => return Err(SignInError::Expired),
                Some("access_denied") | Some("authorization_declined") => {
                    return Err(SignInError::Declined);
                }
                _ => return Err(Self::refused(&body)),
            }
        }
    }

    /// A valid user token: the one held, else refreshed silently with the cached refresh token.
    pub async fn token(&self) -> Result<String, SignInError> {
        {
            let cur = self.current.lock().await;
            if let Some(e) = cur.as_ref()
                && let Some(a) = &e.access_token
                && e.expires_at - MARGIN > now()
            {
                return Ok(a.clone());
            }
        }
        self.refresh().await
    }

    /// Uses the refresh token (from memory or the cache file) for a new access token.
    pub async fn refresh(&self) -> Result<String, SignInError> {
        let entry = match self.current.lock().await.clone() {
            Some(e) => e,
            None => self.load()?.ok_or(SignInError::NotSignedIn)?,
        };
        // A cached access token still good for a while needs no round trip.
        if let Some(a) = &entry.access_token
            && entry.expires_at - MARGIN > now()
        {
            let a = a.clone();
            *self.current.lock().await = Some(entry);
            return Ok(a);
        }
        let s = &self.settings;
        let (status, body) = self
            .post(
                &s.token_endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &s.client_id),
                    ("refresh_token", &entry.refresh_token),
                    ("scope", &s.scope),
                ],
            )
            .await?;
        if status != 200 {
            if body["error"] == "invalid_grant" {
                // The refresh token is dead: forget it so the next run signs in again.
                let _ = self.forget();
                return Err(SignInError::NotSignedIn);
            }
            return Err(Self::refused(&body));
        }
        *self.current.lock().await = Some(entry);
        self.accept(&body).await
    }

    /// Whether a sign-in is cached (in memory or on disk) for these settings.
    pub fn has_cached(&self) -> bool {
        matches!(self.load(), Ok(Some(_)))
    }

    fn matches(&self, e: &CacheEntry) -> bool {
        e.token_endpoint == self.settings.token_endpoint
            && e.client_id == self.settings.client_id
            && e.scope == self.settings.scope
    }

    fn read_file(&self) -> Result<CacheFile, SignInError> {
        let path = &self.settings.cache_file;
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SignInError::Cache {
                path: path.clone(),
                message: format!("not a token cache: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CacheFile::default()),
            Err(e) => Err(SignInError::Cache {
                path: path.clone(),
                message: e.to_string(),
            }),
        }
    }

    fn load(&self) -> Result<Option<CacheEntry>, SignInError> {
        Ok(self
            .read_file()?
            .entries
            .into_iter()
            .find(|e| self.matches(e)))
    }

    fn save(&self, entry: &CacheEntry) -> Result<(), SignInError> {
        let mut file = self.read_file().unwrap_or_default();
        file.entries.retain(|e| !self.matches(e));
        file.entries.push(entry.clone());
        write_private(&self.settings.cache_file, &file)
    }

    /// Removes this sign-in from the cache file (deleting the file when nothing is left).
    pub fn forget(&self) -> Result<bool, SignInError> {
        let mut file = self.read_file()?;
        let before = file.entries.len();
        file.entries.retain(|e| !self.matches(e));
        let removed = file.entries.len() != before;
        let path = &self.settings.cache_file;
        if file.entries.is_empty() {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SignInError::Cache {
                        path: path.clone(),
                        message: e.to_string(),
                    });
                }
            }
        } else {
            write_private(path, &file)?;
        }
        Ok(removed)
    }

    /// Forgets the in-memory sign-in too (for `--force-login`).
    pub async fn reset(&self) {
        *self.current.lock().await = None;
    }
}

/// Writes the cache with mode 0600 (directory 0700), atomically through a temporary file.
fn write_private(path: &Path, file: &CacheFile) -> Result<(), SignInError> {
    let err = |message: String| SignInError::Cache {
        path: path.to_path_buf(),
        message,
    };
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| err(e.to_string()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("tokens"),
        uuid::Uuid::new_v4().simple()
    ));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| err(e.to_string()))?;
        f.write_all(&bytes).map_err(|e| err(e.to_string()))?;
        f.sync_all().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}
