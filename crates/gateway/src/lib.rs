//! agentid's gateway: an identity-aware proxy for agents' LLM and MCP traffic.
//!
//! The config file is a strict subset of AgentGateway's standalone format plus an `agentid:`
//! block. Every request is authenticated (`jwt`), the agent's identity is derived from the
//! validated claims (`identity`), and CEL rules (`rules`) decide what it may do.

pub mod identity;
pub mod jwt;
pub mod rules;
