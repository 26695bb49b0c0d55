//! The HTTP surface: listeners, route matching, query binding, responses.

pub mod host;
pub mod peer;
pub mod query;
pub mod response;
pub mod route;
pub mod server;
