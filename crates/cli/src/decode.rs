//! `agentid token decode`.

use agentid_claims::UnverifiedJwt;
use anyhow::Context;
use std::io::Read;

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// The token; `-` or nothing reads it from standard input.
    token: Option<String>,
    /// Print one JSON object (header, claims, explanation) instead of text.
    #[arg(long)]
    json: bool,
}

impl DecodeArgs {
    pub fn new(token: Option<String>) -> Self {
        Self { token, json: false }
    }
}

pub fn run(args: DecodeArgs) -> anyhow::Result<()> {
    let raw = match args.token.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the token from standard input")?;
            s
        }
        Some(t) => t.to_string(),
    };
    let raw = raw.trim().trim_start_matches("Bearer ").trim();
    let jwt = UnverifiedJwt::parse(raw)
        .map_err(|e| anyhow::anyhow!("{e} (expected header.payload.signature)"))?;
    let now = chrono::Utc::now().timestamp();
    let explanation = agentid_claims::explain::explain(&jwt.claims, now);
    if args.json {
        let out = serde_json::json!({"header": jwt.header, "claims": jwt.claims, "explanation": explanation});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("Header:\n{}\n", serde_json::to_string_pretty(&jwt.header)?);
    println!("Claims:\n{}\n", serde_json::to_string_pretty(&jwt.claims)?);
    println!("What it says (signature not verified):");
    for line in explanation {
        println!("  - {line}");
    }
    Ok(())
}
