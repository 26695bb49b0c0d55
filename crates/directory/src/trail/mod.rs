//! The trail (docs/audit.md): tokens joined to the tokens and credentials they were exchanged
//! from, and the gateways' decisions joined to the tokens they were made with.
//! - [`events`]: the gateways' decision events as stored by `POST /agentid/v1/auditEvents`;
//! - [`chain()`]: the delegation chain of one token, from the user's sign-in and the workload's
//!   credential down to the gateway decisions made with it and its descendants;
//! - [`summary()`]: who acted, in one phrase ("user X via client Y", "agent A for user X");
//! - [`merge_newest_first`]: STS events and gateway decisions as one timeline.

mod assemble;
pub mod events;
mod hops;
mod summary;
mod timeline;

pub use assemble::{MAX_DECISIONS, MAX_TOKENS, chain, tenant_of};
pub use events::{GatewayEvent, GatewayEventQuery};
pub use summary::{Actors, is_agent_user, of_gateway_event, of_sts_event, summary};
pub use timeline::{TrailEvent, merge_newest_first};

use serde::{Deserialize, Serialize};

/// The delegation chain of one token (docs/audit.md §3). Hops are in causal order: what a hop
/// names was produced by hops before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    pub tenant_id: String,
    /// The token the chain was asked for.
    pub uti: String,
    pub hops: Vec<Hop>,
    /// More descendant tokens or decisions existed than the chain holds.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    pub kind: HopKind,
    /// Unix seconds.
    pub time: i64,
    /// One line naming the hop, e.g. `Alice signed in (password)`. Directory text: escape it.
    pub title: String,
    /// The token's `uti` for token hops; the event id for decisions.
    pub id: Option<String>,
    pub outcome: Outcome,
    /// Labelled details, in display order.
    pub facts: Vec<Fact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HopKind {
    /// A user's interactive or password sign-in that started a token family.
    SignIn,
    /// The delegated permission grant a user-subject token relied on.
    Consent,
    /// The workload's or client's credential: a secret, a certificate, a federated assertion.
    Credential,
    /// T1: the blueprint's exchange token for one agent.
    ExchangeToken,
    /// A token of a user, issued to an ordinary client.
    UserToken,
    /// A token of an agent identity: autonomous (T2), on behalf of a user, or as its agent user.
    AgentToken,
    /// An application's or blueprint's own token.
    AppToken,
    /// A gateway's decision on a request made with a token of the chain.
    Decision,
}

impl HopKind {
    pub fn label(self) -> &'static str {
        match self {
            HopKind::SignIn => "user sign-in",
            HopKind::Consent => "consent",
            HopKind::Credential => "workload credential",
            HopKind::ExchangeToken => "T1 (exchange token)",
            HopKind::UserToken => "user token",
            HopKind::AgentToken => "agent token",
            HopKind::AppToken => "application token",
            HopKind::Decision => "gateway decision",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Info,
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub name: String,
    pub value: String,
}

impl Fact {
    pub fn new(name: &str, value: impl Into<String>) -> Fact {
        Fact {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Chain {
    /// The chain as indented text, one hop per block (`agentid sts audit --chain`, `up --demo`).
    pub fn to_text(&self) -> String {
        let mut out = format!("chain of token {}\n", self.uti);
        for (i, h) in self.hops.iter().enumerate() {
            let mark = match h.outcome {
                Outcome::Allow => " [allow]",
                Outcome::Deny => " [deny]",
                Outcome::Info => "",
            };
            let time = chrono::DateTime::from_timestamp(h.time, 0)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "{:>2}. {}: {}{mark}  ({time})\n",
                i + 1,
                h.kind.label(),
                printable(&h.title)
            ));
            for f in &h.facts {
                out.push_str(&format!("      {}: {}\n", f.name, printable(&f.value)));
            }
        }
        if self.truncated {
            out.push_str("    … more tokens or decisions than shown\n");
        }
        out
    }
}

/// Directory text on a terminal: control characters (escape sequences) shown as `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
