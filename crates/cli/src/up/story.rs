//! `agentid up --demo`: the guide's whole story, told step by step against the running parts —
//! sign in → T1 → T2 on behalf of the user → LLM through the gateway → MCP tool allowed → the
//! same call by an autonomous agent denied → the audit trail.

use super::*;
use anyhow::{Context, bail};
use serde_json::{Value, json};

fn claims(token: &str) -> serde_json::Map<String, Value> {
    agentid_claims::UnverifiedJwt::parse(token)
        .map(|t| t.claims.clone())
        .unwrap_or_default()
}

fn s<'a>(c: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    c.get(k).and_then(Value::as_str).unwrap_or("-")
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

pub async fn run(p: &Parts) -> anyhow::Result<()> {
    let mut http = reqwest::Client::builder().no_proxy();
    if let Some(pem) = &p.ca_pem {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    let http = http.build()?;
    println!("agentid up --demo: an AI agent with its own identity, acting for a signed-in user.");

    step(
        1,
        "The user signs in (password grant of the Graph CLI client, as `agentid agent login --username` does)",
    );
    let token_url = format!("{}/oauth2/v2.0/token", p.authority);
    let resp: Value = http
        .post(&token_url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "14d82eec-204b-4c2f-b7e8-296a70dab67e"),
            ("username", DEMO_USER),
            ("password", DEMO_PASSWORD),
            (
                "scope",
                &format!("api://{BLUEPRINT}/access_as_user openid profile offline_access"),
            ),
        ])
        .send()
        .await?
        .json()
        .await?;
    let tc = resp["access_token"]
        .as_str()
        .with_context(|| format!("sign-in failed: {resp}"))?
        .to_string();
    let c = claims(&tc);
    println!(
        "   Tc: subject {} ({}), audience {}, scopes {}",
        s(&c, "upn"),
        s(&c, "oid"),
        s(&c, "aud"),
        s(&c, "scp")
    );

    step(
        2,
        "The sidecar exchanges the blueprint's workload token for T1, then T1 + Tc for T2 (on behalf of the user)",
    );
    let header = sidecar_header(&http, p, "mcp", AGENT, Some(&tc)).await?;
    let t2 = header.trim_start_matches("Bearer ").to_string();
    let c = claims(&t2);
    println!(
        "   T2: actor {} (facets {}), blueprint {}, user {} — audience {}, scopes {}",
        s(&c, "appid"),
        s(&c, "xms_act_fct"),
        s(&c, "xms_par_app_azp"),
        s(&c, "upn"),
        s(&c, "aud"),
        s(&c, "scp")
    );
    println!(
        "   (the blueprint never holds a secret: its credential is a service-account-style token from {})",
        super::workload::ISSUER
    );

    step(
        3,
        "The agent asks the LLM through the gateway's /llm route with its own token",
    );
    let llm_header = sidecar_header(&http, p, "openai", AGENT, Some(&tc)).await?;
    let body = json!({"model": "agentid-offline", "messages": [{"role": "user", "content": "who am I?"}],
        "tools": [{"type": "function", "function": {"name": "whoami", "description": "who is calling", "parameters": {"type": "object", "properties": {}}}}]});
    let resp = http
        .post(format!("{}/llm/v1/chat/completions", p.gateway_url))
        .header("authorization", &llm_header)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the LLM call was refused ({status}): {answer}");
    }
    let call = &answer["choices"][0]["message"]["tool_calls"][0]["function"];
    println!(
        "   the model answers with a tool call: {}({})",
        call["name"].as_str().unwrap_or("-"),
        call["arguments"].as_str().unwrap_or("")
    );

    step(
        4,
        "The agent calls the MCP tool through the gateway (rule: agent.onBehalfOfUser) — allowed",
    );
    let (sid, listed) = mcp_list(&http, p, &t2).await?;
    println!("   tools offered to this caller: {}", listed.join(", "));
    let result = mcp_call(&http, p, &t2, &sid, "whoami").await?;
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    println!("   whoami says: {}", text.lines().next().unwrap_or(""));

    step(
        5,
        "The same call by an agent acting on its own (autonomous, no user) — denied",
    );
    let auto_header = sidecar_header(&http, p, "mcp", AUTONOMOUS_AGENT, None).await;
    match auto_header {
        Err(e) => println!("   the STS refused to mint it at all: {e}"),
        Ok(h) => {
            let t = h.trim_start_matches("Bearer ").to_string();
            let c = claims(&t);
            println!(
                "   autonomous token: actor {}, idtyp {}, no user",
                s(&c, "appid"),
                s(&c, "idtyp")
            );
            let (sid, listed) = mcp_list(&http, p, &t).await?;
            println!(
                "   tools offered to this caller: {}",
                if listed.is_empty() {
                    "(none)".to_string()
                } else {
                    listed.join(", ")
                }
            );
            let denied = mcp_call(&http, p, &t, &sid, "whoami").await?;
            println!(
                "   tools/call whoami → error {}: {}",
                denied["error"]["code"],
                denied["error"]["message"].as_str().unwrap_or("")
            );
        }
    }

    step(
        6,
        "The audit trail: which agent did what, for whom, and what the gateway decided",
    );
    let events: Value = http
        .get(format!("{}/audit/events?limit=20", p.admin_url))
        .send()
        .await?
        .json()
        .await?;
    let mut lines: Vec<String> = events["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .rev()
        .map(|e| {
            format!(
                "   {} {:<4} {:<14} agent={} user={} mode={} → {} ({})",
                e["time"].as_str().unwrap_or("").get(11..19).unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["mcp"]["method"]
                    .as_str()
                    .or(e["llm"]["requestModel"].as_str())
                    .unwrap_or(e["request"]["path"].as_str().unwrap_or("")),
                e["identity"]["agentId"]
                    .as_str()
                    .map(|a| &a[..8.min(a.len())])
                    .unwrap_or("-"),
                e["identity"]["userUpn"].as_str().unwrap_or("-"),
                e["identity"]["agentMode"].as_str().unwrap_or("-"),
                e["decision"]["result"].as_str().unwrap_or(""),
                e["decision"]["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    lines.dedup();
    for l in lines {
        println!("{l}");
    }
    step(
        7,
        "The delegation chain of the allowed tool call, as the STS stores it (docs/audit.md §3)",
    );
    let uti = s(&claims(&t2), "uti").to_string();
    print_chain(p, &uti).await?;
    println!(
        "\nThe story is told. `agentid up` (without --demo) keeps everything running for `agentid agent chat`."
    );
    Ok(())
}

/// Waits for the gateway's shipped decisions to reach the STS, then prints the chain of `uti`
/// and the console's link to it.
async fn print_chain(p: &Parts, uti: &str) -> anyhow::Result<()> {
    let store = &p.sts.state.store;
    let tenant: uuid::Uuid = TENANT_ID.parse()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let chain = loop {
        let chain = agentid_directory::trail::chain(store, &tenant, uti).await?;
        let shipped = chain.as_ref().is_some_and(|c| {
            c.hops.iter().any(|h| {
                h.kind == agentid_directory::trail::HopKind::Decision && h.title.contains("whoami")
            })
        });
        if shipped || std::time::Instant::now() > deadline {
            break chain;
        }
        // The gateway ships its audit in batches about once a second.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match chain {
        Some(c) => {
            for line in c.to_text().lines() {
                println!("   {line}");
            }
        }
        None => println!("   (the STS has no record of token {uti})"),
    }
    println!("   console: {}/console/chains/{uti}", p.sts.base);
    println!("   or: agentid sts audit --chain {uti}");
    Ok(())
}

async fn sidecar_header(
    http: &reqwest::Client,
    p: &Parts,
    api: &str,
    agent: &str,
    user: Option<&str>,
) -> anyhow::Result<String> {
    let req = match user {
        Some(tc) => http
            .get(format!("{}/AuthorizationHeader/{api}", p.sidecar_url))
            .query(&[("AgentIdentity", agent)])
            .bearer_auth(tc),
        None => http
            .get(format!(
                "{}/AuthorizationHeaderUnauthenticated/{api}",
                p.sidecar_url
            ))
            .query(&[
                ("AgentIdentity", agent),
                ("optionsOverride.RequestAppToken", "true"),
            ]),
    };
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or_default();
    match body["authorizationHeader"].as_str() {
        Some(h) if status.is_success() => Ok(h.to_string()),
        _ => bail!(
            "sidecar answered {status}: {}",
            body.get("detail").or(body.get("title")).unwrap_or(&body)
        ),
    }
}

async fn mcp_post(
    http: &reqwest::Client,
    p: &Parts,
    token: &str,
    sid: Option<&str>,
    msg: Value,
) -> anyhow::Result<(Option<String>, Value)> {
    let mut req = http
        .post(format!("{}/mcp", p.gateway_url))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&msg);
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await?;
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((sid, resp.json().await.unwrap_or_default()))
}

async fn mcp_list(
    http: &reqwest::Client,
    p: &Parts,
    token: &str,
) -> anyhow::Result<(String, Vec<String>)> {
    let (sid, init) = mcp_post(http, p, token, None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "agentid-up-demo", "version": "1"}}})).await?;
    let sid = sid.with_context(|| format!("MCP initialize failed: {init}"))?;
    mcp_post(
        http,
        p,
        token,
        Some(&sid),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await?;
    let (_, list) = mcp_post(
        http,
        p,
        token,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await?;
    let names = list["result"]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((sid, names))
}

async fn mcp_call(
    http: &reqwest::Client,
    p: &Parts,
    token: &str,
    sid: &str,
    tool: &str,
) -> anyhow::Result<Value> {
    let (_, v) = mcp_post(http, p, token, Some(sid), json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tool, "arguments": {}}})).await?;
    Ok(v)
}
