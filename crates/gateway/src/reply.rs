//! What a backend hands back to the pipeline: the response, and the audit event the pipeline
//! writes for it (`pipeline::write_audit` is the only writer, docs/gateway.md §11). A refusal
//! or failure becomes both through `failed`.

use crate::audit::{DecisionPart, Event, UpstreamPart};
use crate::body::Body;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::rules::{LlmInfo, McpInfo};
use http::Response;
use tokio::sync::oneshot;

/// An audit event with the LLM or MCP facts its `log.add` / `log.filter` expressions may read.
pub struct Record {
    pub event: Event,
    pub llm: Option<LlmInfo>,
    pub mcp: Option<McpInfo>,
}

impl From<Event> for Record {
    fn from(event: Event) -> Record {
        Record {
            event,
            llm: None,
            mcp: None,
        }
    }
}

/// When the event is written.
pub enum Audit {
    /// Not audited: MCP notifications and refusals at the MCP transport (docs/gateway.md §9.1).
    Skip,
    Now(Box<Record>),
    /// A streamed response: the relay sends its exchange and event once the stream ends.
    Later(oneshot::Receiver<(Exchange, Record)>),
}

pub struct Reply {
    pub response: Response<Body>,
    pub audit: Audit,
}

impl Reply {
    pub fn new(response: Response<Body>, record: impl Into<Record>) -> Reply {
        Reply {
            response,
            audit: Audit::Now(Box::new(record.into())),
        }
    }

    pub fn unaudited(response: Response<Body>) -> Reply {
        Reply {
            response,
            audit: Audit::Skip,
        }
    }
}

/// A refusal or failure on its way to the pipeline, with what the audit event adds to it.
#[derive(Debug)]
pub struct Failure {
    pub error: GatewayError,
    /// The upstream that failed and the credential sent to it.
    pub upstream: Option<UpstreamPart>,
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Failure {
        Failure {
            error,
            upstream: None,
        }
    }
}

impl From<crate::request_path::PathError> for Failure {
    fn from(e: crate::request_path::PathError) -> Failure {
        GatewayError::from(e).into()
    }
}

impl Failure {
    /// The upstream did not answer: the event says so, with the credential that was sent.
    pub fn upstream(error: GatewayError, credential: &'static str) -> Failure {
        let upstream = UpstreamPart {
            target: None,
            status: None,
            duration_ms: None,
            error: Some(error.to_string()),
            credential,
        };
        Failure {
            error,
            upstream: Some(upstream),
        }
    }
}

/// The gateway's own answer to a refusal or failure, and its `http` audit event: a policy's
/// refusal is a `deny` at its stage; so is every 4xx before a route was chosen.
pub fn failed(ex: &mut Exchange, failure: impl Into<Failure>) -> Reply {
    let Failure { error, upstream } = failure.into();
    let status = error.status();
    if let Some(stage) = error.denied_at() {
        ex.decision = DecisionPart {
            result: "deny",
            stage,
            reason: error.code().to_string(),
            ..Default::default()
        };
    }
    let mut event = ex.event("http", status.as_u16());
    if status.is_client_error() && ex.route.is_none() {
        event.decision.result = "deny";
        event.decision.reason = error.code().to_string();
    }
    event.upstream = upstream;
    Reply::new(error.into_response(&ex.correlation_id), event)
}
