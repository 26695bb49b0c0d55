//! agentid's token service: the Entra v2.0 endpoint protocol with every agent flow.

pub mod authorize;
pub mod client_ip;
pub mod console;
pub mod context;
pub mod devicelogin;
pub mod discovery;
pub mod error;
pub mod federation;
pub mod form;
pub mod graph;
pub mod jws;
pub mod keys;
pub mod logout;
pub mod own_tokens;
pub mod password;
pub mod server;
pub mod settings;
pub mod signin;
pub mod state;
pub mod tls;
pub mod token;
pub mod trail;
pub mod userinfo;

pub use server::{RunningSts, start};
pub use settings::Settings;
