//! `agentid.revocation` (docs/gateway.md §19): the raw block checked into
//! [`RevocationSettings`], and the route names it refers to checked against the routes.

use super::common::{Result, dur};
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw;
use agentid_claims::revocation::PollSettings;
use agentid_claims::revocation::poller::MAX_WAIT;
use std::collections::HashMap;
use std::time::Duration;

const P: &str = "agentid.revocation";

/// Default grace: a feed unrefreshed for a minute fails its routes closed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

fn mode(path: &str, v: &Option<String>, default: FailureMode) -> Result<FailureMode> {
    match v.as_deref() {
        None => Ok(default),
        Some("open") => Ok(FailureMode::Open),
        Some("closed") => Ok(FailureMode::Closed),
        Some(other) => Err(ConfigError::at(
            path,
            format!("{other:?} is not a failure mode (open or closed)"),
        )),
    }
}

/// A grace period: at most a day, and longer than a long poll (a feed held in a long poll is
/// as old as the poll while it waits).
fn grace(path: &str, v: &Option<String>, default: Duration, wait: Duration) -> Result<Duration> {
    let g = dur(path, v, default)?;
    if g > Duration::from_secs(86_400) {
        return Err(ConfigError::at(path, "must be at most 24h"));
    }
    if !wait.is_zero() && g <= wait {
        return Err(ConfigError::at(path, "must be longer than longPollWait"));
    }
    Ok(g)
}

pub(super) fn revocation(
    r: Option<&raw::AgentidRevocation>,
    clock_skew: Duration,
) -> Result<Option<RevocationSettings>> {
    let Some(r) = r else { return Ok(None) };
    let interval = dur(
        &format!("{P}.pollInterval"),
        &r.poll_interval,
        Duration::from_secs(2),
    )?;
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(300) {
        return Err(ConfigError::at(
            format!("{P}.pollInterval"),
            "must be between 100ms and 5m",
        ));
    }
    let wait = dur(
        &format!("{P}.longPollWait"),
        &r.long_poll_wait,
        Duration::from_secs(20),
    )?;
    if wait > MAX_WAIT {
        return Err(ConfigError::at(
            format!("{P}.longPollWait"),
            "must be at most 25s (0s polls without waiting)",
        ));
    }
    let default = FailurePolicy {
        mode: mode(
            &format!("{P}.failureMode"),
            &r.failure_mode,
            FailureMode::Closed,
        )?,
        grace: grace(
            &format!("{P}.gracePeriod"),
            &r.grace_period,
            DEFAULT_GRACE,
            wait,
        )?,
    };
    let mut routes = HashMap::new();
    for (i, rr) in r.routes.iter().enumerate() {
        let path = format!("{P}.routes[{i}]");
        if rr.route.is_empty() {
            return Err(ConfigError::at(
                format!("{path}.route"),
                "must name a route",
            ));
        }
        let policy = FailurePolicy {
            mode: mode(
                &format!("{path}.failureMode"),
                &rr.failure_mode,
                default.mode,
            )?,
            grace: grace(
                &format!("{path}.gracePeriod"),
                &rr.grace_period,
                default.grace,
                wait,
            )?,
        };
        if routes.insert(rr.route.clone(), policy).is_some() {
            return Err(ConfigError::at(
                format!("{path}.route"),
                format!("route {:?} is named twice", rr.route),
            ));
        }
    }
    let issuers = match &r.issuers {
        None => None,
        Some(list) => {
            for (i, iss) in list.iter().enumerate() {
                if url::Url::parse(iss).is_err() {
                    return Err(ConfigError::at(
                        format!("{P}.issuers[{i}]"),
                        format!("{iss:?} is not an absolute URL"),
                    ));
                }
            }
            Some(list.clone())
        }
    };
    Ok(Some(RevocationSettings {
        issuers,
        poll: PollSettings {
            interval,
            wait,
            fetch_timeout: Duration::from_secs(5),
            skew: clock_skew,
        },
        default,
        routes,
    }))
}

/// Every route `agentid.revocation.routes` names exists.
pub(super) fn check_routes(settings: &Settings, binds: &[Bind]) -> Result<()> {
    let Some(r) = &settings.revocation else {
        return Ok(());
    };
    for name in r.routes.keys() {
        let exists = binds
            .iter()
            .flat_map(|b| &b.listeners)
            .flat_map(|l| &l.routes)
            .any(|route| &route.id == name);
        if !exists {
            return Err(ConfigError::at(
                format!("{P}.routes"),
                format!("there is no route named {name:?}"),
            ));
        }
    }
    Ok(())
}
