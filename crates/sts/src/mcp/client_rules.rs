//! What a public MCP client may be, shared by dynamic registration (docs/sts.md §16.3) and
//! client ID metadata documents (§16.4): redirect URIs, flows, a name, and the per-tenant limit
//! on new clients.

use agentid_directory::applications::{RedirectPlatform, RedirectUri};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use uuid::Uuid;

pub const MAX_REDIRECT_URIS: usize = 10;
pub const MAX_NAME_CHARS: usize = 200;
/// New clients per tenant per window.
pub const RATE_LIMIT: u32 = 20;
pub const RATE_WINDOW_SECS: i64 = 60;
/// Tenants tracked by the limiter at once (the map is cleared beyond it).
const RATE_TENANTS: usize = 4096;

/// A fixed window per tenant; `false` once the tenant's window is full. Registrations (§16.3)
/// and the applications made for metadata documents (§16.4) share it.
pub fn admit(tenant: &Uuid, now: i64) -> bool {
    static WINDOWS: OnceLock<Mutex<HashMap<Uuid, (i64, u32)>>> = OnceLock::new();
    let Ok(mut m) = WINDOWS.get_or_init(Default::default).lock() else {
        return false;
    };
    if m.len() >= RATE_TENANTS && !m.contains_key(tenant) {
        m.clear();
    }
    let w = m.entry(*tenant).or_insert((now, 0));
    if now - w.0 >= RATE_WINDOW_SECS {
        *w = (now, 0);
    }
    w.1 += 1;
    w.1 <= RATE_LIMIT
}

/// 1 to [`MAX_REDIRECT_URIS`] redirect URIs valid for a public client (shared with client ID
/// metadata documents, docs/sts.md §16.4).
pub fn redirect_uris(list: &[String]) -> Result<Vec<RedirectUri>, String> {
    if list.is_empty() || list.len() > MAX_REDIRECT_URIS {
        return Err(format!(
            "1 to {MAX_REDIRECT_URIS} redirect_uris are required."
        ));
    }
    list.iter()
        .map(|u| RedirectUri::parse(u, RedirectPlatform::PublicClient).map_err(|e| e.to_string()))
        .collect()
}

/// Only authorization code (with refresh tokens) and the `code` response type.
pub fn flows(
    grant_types: Option<&[String]>,
    response_types: Option<&[String]>,
) -> Result<(), String> {
    if grant_types.is_some_and(|g| {
        g.iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    }) {
        return Err("grant_types may only be authorization_code and refresh_token.".into());
    }
    if response_types.is_some_and(|r| r.iter().any(|r| r != "code")) {
        return Err("response_types may only be code.".into());
    }
    Ok(())
}

/// The trimmed `client_name`, `default` when absent or blank; bounded and printable.
pub fn client_name(name: Option<&str>, default: &str) -> Result<String, String> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(default);
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(format!(
            "client_name must be at most {MAX_NAME_CHARS} printable characters."
        ));
    }
    Ok(name.to_string())
}
