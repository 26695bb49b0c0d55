//! Stand-ins for the outside services agentid talks to, served on loopback port 0: an
//! OpenAI/Azure-compatible chat server and streamable-HTTP MCP servers that record what they
//! receive ([`recording`]), and a scripted model plus an rmcp MCP server that check the
//! bearer's audience ([`scripted`]). They emulate Azure OpenAI and third-party MCP servers,
//! which cannot run here.

pub mod recording;
pub mod scripted;

use std::net::SocketAddr;

/// Serves `router` on a loopback port; the task lives as long as the runtime.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    addr
}

/// Stops a server task when dropped.
pub struct StopOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
