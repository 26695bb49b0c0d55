//! What MCP clients need from the STS and Entra lacks (docs/sts.md §16): RFC 8414 metadata at
//! the path-inserted well-known location (`metadata`), the RFC 8707 `resource` parameter
//! (`resource`), and dynamic client registration (RFC 7591, `register`).

pub mod metadata;
pub mod register;
pub mod resource;
