//! The offline model over HTTP without a bearer check: the OpenAI and Azure OpenAI paths, the
//! exact streaming shape, usage, and OpenAI-shaped errors.

use agentid_demo::{ModelSettings, RunningServer};
use serde_json::{Value, json};

async fn start() -> RunningServer {
    agentid_demo::start_model(ModelSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        check: None,
    })
    .await
    .expect("model starts")
}

fn whoami_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "demo__whoami", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "demo__add_note", "parameters": {"type": "object",
            "properties": {"text": {"type": "string"}}, "required": ["text"]}}}
    ])
}

/// The `data:` payloads of an SSE body, in order.
fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn non_streaming_answers_and_usage() {
    let m = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", m.base_url());

    let v: Value = http
        .post(&url)
        .json(&json!({"model": "x", "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "agentid-offline");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "agentid-offline model: you said \"hello there\"."
    );
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["usage"]["total_tokens"], 8);

    // Azure OpenAI path, a note with text, deterministic ids for the same request.
    let azure = format!(
        "{}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        m.base_url()
    );
    let body = json!({"messages": [{"role": "system", "content": "be brief"},
        {"role": "user", "content": "Add a note: call Bob"}], "tools": whoami_tools()});
    let a: Value = http
        .post(&azure)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = http
        .post(&azure)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let call = &a["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "demo__add_note");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"text": "call Bob"}));
    assert_eq!(a["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(a["id"], b["id"]);
    assert_eq!(
        call["id"],
        b["choices"][0]["message"]["tool_calls"][0]["id"]
    );

    // The tool result comes back: a plain summary naming the tool.
    let v: Value = http
        .post(&url)
        .json(&json!({"messages": [
            {"role": "user", "content": "add a note: call Bob"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": [{"type": "text", "text": "Noted (note 1)."}]}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The tool demo__add_note says: Noted (note 1)."
    );

    let models: Value = http
        .get(format!("{}/v1/models", m.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "agentid-offline");
    m.shutdown().await;
}

#[tokio::test]
async fn streaming_has_openais_shape() {
    let m = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", m.base_url());

    // A tool call, with usage requested.
    let r = http
        .post(&url)
        .json(
            &json!({"messages": [{"role": "user", "content": "who am I?"}], "tools": whoami_tools(),
            "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].clone();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "agentid-offline");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 2);
    let (finish, deltas) = rest.split_last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let mut name = String::new();
    let mut args = String::new();
    let mut ids = Vec::new();
    for d in &deltas[1..] {
        assert_eq!(
            d["usage"],
            Value::Null,
            "usage is null until the last chunk"
        );
        assert_eq!(d["choices"][0]["finish_reason"], Value::Null);
        let tc = &d["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(tc["index"], 0);
        if let Some(i) = tc["id"].as_str() {
            ids.push(i.to_string());
        }
        name.push_str(tc["function"]["name"].as_str().unwrap_or(""));
        args.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
    }
    assert_eq!(ids.len(), 1, "the call id comes once");
    assert_eq!(name, "demo__whoami");
    assert_eq!(args, "{}");

    // Text, without usage: content deltas reassemble the answer; no usage anywhere.
    let r = http
        .post(&url)
        .json(
            &json!({"messages": [{"role": "user", "content": "tell me a story"}], "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "agentid-offline model: you said \"tell me a story\".");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    m.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_openai_errors() {
    let m = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", m.base_url());
    for body in [
        "{not json",
        "{}",
        r#"{"messages": "hi"}"#,
        r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
    ] {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
    }
    m.shutdown().await;
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let m = start().await;
    let err = agentid_demo::start_model(ModelSettings {
        listen: m.addr,
        check: None,
    })
    .await
    .err()
    .expect("second bind fails");
    assert!(err.to_string().contains(&m.addr.to_string()), "{err}");
    m.shutdown().await;
}
