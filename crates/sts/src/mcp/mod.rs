//! What MCP clients need from the STS and Entra lacks (docs/sts.md §16): RFC 8414 metadata at
//! the path-inserted well-known location (`metadata`), the RFC 8707 `resource` parameter
//! (`resource`), dynamic client registration (RFC 7591, `register`), and client ID metadata
//! documents (`client_metadata`, §16.4).

pub mod client_metadata;
pub mod client_rules;
pub mod metadata;
pub mod register;
pub mod resource;
