//! Streaming is relayed unbuffered (docs/gateway.md §10.3, L2): the upstream sends its second chunk
//! only after the client has received the first through the gateway — a gateway that buffered
//! would deadlock, and the test would fail at its deadline.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn the_first_chunk_reaches_the_client_before_the_upstream_sends_the_second() {
    let release = Arc::new(tokio::sync::Notify::new());
    let upstream_release = release.clone();
    let router = axum::Router::new().fallback(move || {
        let release = upstream_release.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
            tokio::spawn(async move {
                let chunk = |text: &str| format!("data: {}\n\n", json!({"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]}));
                let _ = tx.send(Ok(chunk("first"))).await;
                // The second chunk waits for the client to have seen the first.
                release.notified().await;
                let _ = tx.send(Ok(chunk("second"))).await;
                let _ = tx.send(Ok(format!("data: {}\n\n", json!({"object": "chat.completion.chunk", "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})))).await;
                let _ = tx.send(Ok("data: [DONE]\n\n".to_string())).await;
            });
            let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
            ([("content-type", "text/event-stream")], body)
        }
    });
    let upstream = serve(router).await;
    let config = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - ai: {{name: slow, hostOverride: \"{upstream}\", provider: {{openAI: {{}}}}}}\n"
    );
    let gw = Gw::start(&config, None).await;
    let resp = gw
        .http
        .post(gw.url(3000, "/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the first chunk arrives while the upstream still holds the second")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("first"));
    release.notify_one();
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.contains("second") && rest.contains("[DONE]"));
    assert!(
        rest.contains("\"usage\""),
        "the client asked for usage, so it is forwarded"
    );
    // The stream's usage is recorded once it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = gw.audit("kind=llm").await;
        if let Some(e) = events.first() {
            assert_eq!(e["llm"]["usage"]["total"], json!(5));
            assert_eq!(e["llm"]["streaming"], json!(true));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit event for the stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
