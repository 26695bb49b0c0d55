//! Password checks, the one path for the sign-in pages and the password grant
//! (docs/sts.md §7.9, §11.2): lockout checks per user and per client address, a bounded Argon2
//! check, and failures counted atomically in the database.

use crate::state::StsState;
use agentid_directory::DirectoryError;
use agentid_directory::model::{Tenant, User, UserKind};
use agentid_directory::password_gate::Busy;
use agentid_directory::tokens::LockoutPolicy;
use std::time::Duration;

/// Per user: 10 consecutive failures lock for 60 s, doubling per further lock (AADSTS50053).
pub const USER_LOCKOUT: LockoutPolicy = LockoutPolicy {
    threshold: 10,
    lock_secs: 60,
    window: None,
};
/// Per client address: 30 failures in 10 minutes lock the address for 10 minutes (429).
pub const ADDRESS_LOCKOUT: LockoutPolicy = LockoutPolicy {
    threshold: 30,
    lock_secs: 600,
    window: Some(600),
};

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong password, unknown user, or a user who cannot sign in with a password: one answer,
    /// so accounts cannot be enumerated (AADSTS50126).
    #[error("invalid username or password")]
    BadCredentials { user: Option<Box<User>> },
    /// The user is locked (AADSTS50053).
    #[error("the account is locked")]
    UserLocked { user: Option<Box<User>> },
    /// The client address is locked (429).
    #[error("too many failed sign-ins from this address")]
    AddressLocked { retry_after: Duration },
    /// Too many password checks in progress (429).
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// The lockout keys of an attempt: the user (or the name tried) and the client address.
struct Subjects {
    user: String,
    address: String,
}

/// Checks `username`/`password` in `tenant` for a request from `client_ip`. On success the
/// user's failures are cleared; the caller still checks that the account is enabled.
pub async fn check_password(
    sts: &StsState,
    tenant: &Tenant,
    username: &str,
    password: &str,
    client_ip: Option<&str>,
) -> Result<User, SignInError> {
    let tid = tenant.id.to_string();
    let user = sts.store.user_by_upn(&tenant.id, username).await?;
    let keys = Subjects {
        user: user
            .as_ref()
            .map(|u| u.id.to_string())
            .unwrap_or_else(|| format!("upn:{}", username.to_lowercase())),
        address: format!("ip:{}", client_ip.unwrap_or("unknown")),
    };
    // Cheap refusals first, so a locked subject takes no Argon2 slot...
    check_locks(sts, &tid, &keys, user.as_ref()).await?;
    let permit = sts.passwords.acquire().await?;
    // ...and again once a slot is ours: failures that finished while we waited count.
    check_locks(sts, &tid, &keys, user.as_ref()).await?;
    let phc = match &user {
        // Agent users have no password and never sign in this way.
        Some(u) if u.kind == UserKind::User => u.password_hash.clone(),
        _ => None,
    };
    // Unknown users cost the same Argon2 work as known ones (no timing oracle).
    let verified = permit.verify(password.to_string(), phc).await;
    match (verified, user) {
        (true, Some(user)) => {
            sts.store.clear_signin_failures(&tid, &keys.user).await?;
            Ok(user)
        }
        (_, user) => {
            sts.store
                .record_signin_failure(&tid, &keys.user, USER_LOCKOUT)
                .await?;
            sts.store
                .record_signin_failure(&tid, &keys.address, ADDRESS_LOCKOUT)
                .await?;
            Err(SignInError::BadCredentials {
                user: user.map(Box::new),
            })
        }
    }
}

async fn check_locks(
    sts: &StsState,
    tid: &str,
    keys: &Subjects,
    user: Option<&User>,
) -> Result<(), SignInError> {
    if sts
        .store
        .signin_locked_until(tid, &keys.user)
        .await?
        .is_some()
    {
        return Err(SignInError::UserLocked {
            user: user.cloned().map(Box::new),
        });
    }
    if let Some(until) = sts.store.signin_locked_until(tid, &keys.address).await? {
        let wait = (until - chrono::Utc::now().timestamp()).max(1) as u64;
        return Err(SignInError::AddressLocked {
            retry_after: Duration::from_secs(wait),
        });
    }
    Ok(())
}
