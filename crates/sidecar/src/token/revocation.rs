//! The kill switch at the sidecar (docs/sidecar.md §18): the revocation feed of the
//! authority's tenant, polled with the shared client of `agentid_claims::revocation` and
//! verified with the key cache inbound validation already holds. Before a token is acquired
//! or handed out, a disabled agent or blueprint, a revoked user session (of the inbound token)
//! or a revoked token is refused; on every new feed version, cached tokens the feed revokes
//! are dropped.

use super::cache::{CachedToken, TokenCache};
use crate::config::RevocationSettings;
use crate::inbound::InboundToken;
use agentid_claims::UnverifiedJwt;
use agentid_claims::revocation::{self, FeedHandle, RevocationState};
use agentid_claims::verify::{Fetcher, KeyCache};
use std::sync::{Arc, Weak};

/// Why the gate refuses; the engine turns it into its `AcquireError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 with this detail (`revoked:<why>: …`).
    Revoked(String),
    /// The feed is older than the grace period and the sidecar fails closed: 503.
    Unavailable { url: String },
}

pub struct RevocationGate {
    feed: Arc<FeedHandle>,
    settings: RevocationSettings,
    /// The sidecar's own client: the blueprint of every agent it acts for.
    blueprint: String,
}

impl RevocationGate {
    /// Starts polling `{instance}{tenant}/v2.0`'s feed. Needs a tokio runtime.
    pub fn start(
        issuer: &str,
        keys: KeyCache,
        http: reqwest::Client,
        settings: RevocationSettings,
        blueprint: &str,
    ) -> RevocationGate {
        let feed = revocation::spawn(
            issuer,
            keys,
            Fetcher::configured(http),
            settings.poll.clone(),
        );
        RevocationGate {
            feed,
            settings,
            blueprint: blueprint.to_ascii_lowercase(),
        }
    }

    pub fn feed(&self) -> &Arc<FeedHandle> {
        &self.feed
    }

    /// The state to judge by; an error when it is older than the grace period and the
    /// sidecar fails closed.
    fn state(&self) -> Result<Option<Arc<RevocationState>>, Refusal> {
        let state = self.feed.current();
        if self.feed.staleness() > self.settings.grace && !self.settings.fail_open {
            return Err(Refusal::Unavailable {
                url: self.feed.url().to_string(),
            });
        }
        Ok(state)
    }

    /// Before any token is acquired or taken from the cache for `agent` (and, on behalf of a
    /// user, with the inbound token `tc`).
    pub fn before(&self, agent: Option<&str>, tc: Option<&InboundToken>) -> Result<(), Refusal> {
        let Some(state) = self.state()? else {
            return Ok(());
        };
        if let Some(agent) = agent
            && state.agent_disabled(agent, Some(&self.blueprint))
        {
            return Err(refused(
                "revoked:agentDisabled",
                "the agent identity is disabled",
            ));
        }
        if state.disabled_blueprints.contains(&self.blueprint) {
            return Err(refused(
                "revoked:agentDisabled",
                "the blueprint is disabled",
            ));
        }
        if let Some(tc) = tc
            && let Some(why) = state.check(&tc.jwt.claims)
        {
            return Err(refused(why.reason(), "the inbound token is revoked"));
        }
        Ok(())
    }

    /// Whether a token about to be handed out is revoked (by its own claims).
    pub fn revokes(&self, token: &CachedToken) -> Option<Refusal> {
        let state = self.feed.current()?;
        revoked_by(&state, token).map(|why| refused(why, "the token is revoked"))
    }

    /// Drops cached tokens the feed revokes each time a new version arrives. Ends with the
    /// cache.
    pub fn purge_on_change(&self, cache: Weak<TokenCache>) {
        let mut versions = self.feed.subscribe();
        let feed = Arc::downgrade(&self.feed);
        tokio::spawn(async move {
            while versions.changed().await.is_ok() {
                let (Some(cache), Some(feed)) = (cache.upgrade(), feed.upgrade()) else {
                    return;
                };
                if let Some(state) = feed.current() {
                    let dropped = cache.retain(|t| revoked_by(&state, t).is_none());
                    if dropped > 0 {
                        tracing::info!(
                            event = "revoked_tokens_dropped",
                            dropped,
                            version = state.version,
                            "cached tokens revoked by the feed were dropped"
                        );
                    }
                }
            }
        });
    }
}

fn refused(reason: &str, what: &str) -> Refusal {
    Refusal::Revoked(format!("{reason}: {what}."))
}

/// The reason a cached token is revoked, judged by its claims (the sidecar's own tokens from
/// the authority, so their claims are read without verifying them again).
fn revoked_by(state: &RevocationState, token: &CachedToken) -> Option<&'static str> {
    let jwt = UnverifiedJwt::parse(&token.token).ok()?;
    state.check(&jwt.claims).map(|r| r.reason())
}
