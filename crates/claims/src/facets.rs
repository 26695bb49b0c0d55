//! The kinds of token agentid issues and the facet claims each carries (docs/sts.md §8.3).
//!
//! Consumers must treat facet claims as unordered sets of integers and rely only on the
//! documented values ([`AGENT_IDENTITY`], [`AGENT_ID_USER`]); the rest is emitted for realism.

/// Facet value documented by Microsoft: the actor or subject is an agent identity. Facets are
/// `i64` because policies (CEL) see them as ints.
pub const AGENT_IDENTITY: i64 = 11;
/// Facet value documented by Microsoft: the subject is an agent's user account.
pub const AGENT_ID_USER: i64 = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// App-only token of an ordinary confidential application.
    App,
    /// App-only token of a blueprint acting as itself.
    Blueprint,
    /// Blueprint exchange token (`fmi_path`).
    T1,
    /// Autonomous agent token (T2, and T2′ whose audience is the token-exchange resource).
    AgentApp,
    /// Agent acting on behalf of a user.
    AgentObo,
    /// Agent acting as its own user account.
    AgentUser,
    /// Plain user token (device code, auth code, password, refresh).
    User,
    /// Plain application on-behalf-of a user.
    AppObo,
}

pub struct Facets {
    pub act: &'static str,
    pub sub: &'static str,
    pub idrel: &'static str,
    pub tnt: Option<&'static str>,
}

impl TokenKind {
    pub fn facets(self) -> Facets {
        let (act, sub, idrel, tnt) = match self {
            TokenKind::App | TokenKind::Blueprint => ("9 3", "9 3", "7 6", Some("2 3")),
            TokenKind::T1 => ("3 9", "3 9", "7 24", None),
            TokenKind::AgentApp => ("3 11 9", "3 11 9", "7 8", Some("6 3")),
            TokenKind::AgentObo => ("11 9 3", "2 3", "1 8", Some("3 8")),
            TokenKind::AgentUser => ("1 9 11", "1 13", "1 8", Some("6 1")),
            TokenKind::User | TokenKind::AppObo => ("9 3", "2 3", "1 6", Some("2 3")),
        };
        Facets {
            act,
            sub,
            idrel,
            tnt,
        }
    }

    pub fn is_user(self) -> bool {
        matches!(
            self,
            TokenKind::AgentObo | TokenKind::AgentUser | TokenKind::User | TokenKind::AppObo
        )
    }

    pub fn is_agent(self) -> bool {
        matches!(
            self,
            TokenKind::AgentApp | TokenKind::AgentObo | TokenKind::AgentUser
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenKind::App => "app-only token",
            TokenKind::Blueprint => "blueprint token",
            TokenKind::T1 => "blueprint exchange token (T1)",
            TokenKind::AgentApp => "autonomous agent token (T2)",
            TokenKind::AgentObo => "agent on-behalf-of token (T2)",
            TokenKind::AgentUser => "agent user token",
            TokenKind::User => "user token",
            TokenKind::AppObo => "application on-behalf-of token",
        }
    }
}
