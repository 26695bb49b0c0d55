//! The `agentid agent` command: arguments and what each subcommand does.

use crate::agent::{Agent, AgentError, Event};
use crate::config::{AgentConfig, ConfigError, Sources, TokenMode};
use crate::explain::{token_lines, token_summary};
use crate::setup::{self, SetupError, SignInOptions};
use crate::signin::UserSession;
use crate::tokens::{TokenProvider, now};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Configuration file (YAML, or TOML by extension); default $AGENTID_HOME/agent.yaml, then ./.agentid/agent.yaml.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// How agent tokens are obtained (overrides the configuration).
    #[arg(long, global = true, value_parser = ["direct", "sidecar"])]
    pub tokens: Option<String>,
    /// Act as the agent itself (app-only tokens), without a signed-in user.
    #[arg(long, global = true)]
    pub autonomous: bool,
    /// Ignore the cached sign-in and sign in again.
    #[arg(long, global = true)]
    pub force_login: bool,
    /// Sign in with the password grant as this user (scripts and tests only); the password is read from AGENTID_AGENT_PASSWORD.
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// A CA certificate (PEM) added to the system roots (also AGENTID_AGENT_CA_FILE or AGENTID_CA_FILE).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Cap on tool-call rounds per question.
    #[arg(long, global = true)]
    pub max_iterations: Option<u32>,
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Sign the user in (device code) and cache the refresh token.
    Login,
    /// Delete the cached sign-in.
    Logout,
    /// Interactive chat (/tools, /whoami, /clear, /exit).
    Chat,
    /// Ask one question; the answer goes to stdout, everything else to stderr.
    Ask {
        /// The question.
        question: Vec<String>,
    },
    /// Decode and explain the tokens the agent holds.
    Tokens,
    /// Print the effective configuration (secrets redacted).
    Config,
}

/// Loads the configuration with the command-line overrides applied.
pub fn load_config(args: &AgentArgs) -> Result<AgentConfig, CliError> {
    let mut cfg = crate::config::load(&Sources::from_process(args.config.clone()))?;
    if let Some(t) = &args.tokens {
        cfg.tokens = t.parse::<TokenMode>().map_err(ConfigError::Invalid)?;
    }
    if let Some(ca) = &args.ca_file {
        cfg.ca_file = Some(ca.clone());
    }
    if let Some(m) = args.max_iterations {
        cfg.max_iterations = m.max(1);
    }
    if let Some(u) = &args.username {
        cfg.username = Some(u.clone());
    }
    Ok(cfg)
}

fn sign_in_options(args: &AgentArgs, cfg: &AgentConfig) -> SignInOptions {
    SignInOptions {
        force_login: args.force_login,
        username: cfg.username.clone(),
        password: std::env::var("AGENTID_AGENT_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
        no_prompt: false,
    }
}

/// The whole `agentid agent` command.
pub async fn run(args: AgentArgs) -> Result<(), CliError> {
    let cfg = load_config(&args)?;
    match &args.command {
        AgentCommand::Config => {
            print!("{}", cfg.to_redacted_yaml());
            Ok(())
        }
        AgentCommand::Logout => {
            let user = setup::session(&cfg)?;
            let removed = user.forget().map_err(SetupError::from)?;
            eprintln!(
                "{}",
                if removed {
                    format!(
                        "Signed out: removed the cached sign-in from {}",
                        cfg.token_cache.display()
                    )
                } else {
                    "No cached sign-in to remove.".to_string()
                }
            );
            Ok(())
        }
        AgentCommand::Login => {
            let user = setup::session(&cfg)?;
            let mut opts = sign_in_options(&args, &cfg);
            if opts.username.is_none() {
                // `login` means an interactive sign-in unless one is cached and not forced.
                opts.password = None;
            }
            let tc = setup::sign_in(&user, &opts, &mut std::io::stderr()).await?;
            eprintln!("Signed in: {}", token_summary(&tc, now()));
            eprintln!(
                "The refresh token is cached in {} (mode 0600).",
                cfg.token_cache.display()
            );
            Ok(())
        }
        AgentCommand::Tokens => {
            let (tokens, user) = start_tokens(&args, &cfg).await?;
            let agent = setup::agent(&cfg, tokens.clone()).await?;
            if let Some(api) = agent.llm_api()
                && let Err(e) = tokens.token(&api, false).await
            {
                eprintln!("model token: {e}");
            }
            report_unavailable(&agent);
            print!("{}", whoami(&tokens, user.as_deref()).await);
            Ok(())
        }
        AgentCommand::Ask { question } => {
            let q = question.join(" ");
            if q.trim().is_empty() {
                return Err(CliError::Other("ask needs a question".into()));
            }
            let (tokens, _user) = start_tokens(&args, &cfg).await?;
            let mut agent = setup::agent(&cfg, tokens).await?;
            report_unavailable(&agent);
            let mut printed = false;
            let mut on_event = |e: Event| print_event(e, &mut printed);
            let answer = agent.ask(&q, &mut on_event).await;
            let answer = answer?;
            if !printed {
                print!("{answer}");
            }
            println!();
            Ok(())
        }
        AgentCommand::Chat => {
            let (tokens, user) = start_tokens(&args, &cfg).await?;
            let agent = setup::agent(&cfg, tokens.clone()).await?;
            chat(agent, tokens, user).await
        }
    }
}

async fn start_tokens(
    args: &AgentArgs,
    cfg: &AgentConfig,
) -> Result<(Arc<dyn TokenProvider>, Option<Arc<UserSession>>), CliError> {
    let user = if args.autonomous {
        None
    } else {
        let u = setup::session(cfg)?;
        setup::sign_in(&u, &sign_in_options(args, cfg), &mut std::io::stderr()).await?;
        Some(u)
    };
    let tokens = setup::provider(cfg, cfg.tokens, user.clone())?;
    Ok((tokens, user))
}

fn report_unavailable(agent: &Agent) {
    for (name, why) in &agent.toolbox.unavailable {
        eprintln!("warning: MCP server `{name}` is skipped: {why}");
    }
}

fn print_event(e: Event, printed: &mut bool) {
    match e {
        Event::Text(t) => {
            *printed = true;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        }
        Event::ToolCall {
            function,
            arguments,
        } => {
            let args: String = arguments.chars().take(200).collect();
            eprintln!("[tool] {function}({args})");
        }
        Event::ToolResult {
            function,
            is_error,
            text,
        } => {
            let t: String = text.chars().take(300).collect();
            eprintln!(
                "[tool {}] {function}: {t}",
                if is_error { "error" } else { "result" }
            );
        }
    }
}

/// The token chain in words: the user's token, then every agent token held.
pub async fn whoami(tokens: &Arc<dyn TokenProvider>, user: Option<&UserSession>) -> String {
    let n = now();
    let mut out = String::new();
    out.push_str(&format!(
        "How tokens are obtained: {}.\n",
        tokens.describe()
    ));
    match user {
        Some(u) => match u.token().await {
            Ok(tc) => {
                out.push_str("\nUser token (Tc), from the sign-in:\n");
                for l in token_lines(&tc, n) {
                    out.push_str(&format!("  {l}\n"));
                }
            }
            Err(e) => out.push_str(&format!("\nUser token: {e}\n")),
        },
        None => out.push_str("\nNo user: the agent acts autonomously, as itself.\n"),
    }
    let held = tokens.held().await;
    if held.is_empty() {
        out.push_str("\nNo agent tokens are held yet.\n");
    }
    for (label, t) in held {
        out.push_str(&format!("\nAgent token for {label}:\n"));
        for l in token_lines(&t, n) {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Plain(tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>),
}

impl Input {
    /// The next line, or None at end of input.
    async fn next(&mut self, prompt: &str) -> Result<Option<String>, CliError> {
        match self {
            Input::Editor(ed) => {
                // rustyline blocks; run it off the async threads.
                let mut taken = std::mem::replace(ed, Box::new(new_editor()?));
                let p = prompt.to_string();
                let (back, line) = tokio::task::spawn_blocking(move || {
                    let r = taken.readline(&p);
                    if let Ok(l) = &r
                        && !l.trim().is_empty()
                    {
                        let _ = taken.add_history_entry(l.as_str());
                    }
                    (taken, r)
                })
                .await
                .map_err(|e| CliError::Other(e.to_string()))?;
                *ed = back;
                match line {
                    Ok(l) => Ok(Some(l)),
                    Err(rustyline::error::ReadlineError::Interrupted) => Ok(Some(String::new())),
                    Err(rustyline::error::ReadlineError::Eof) => Ok(None),
                    Err(e) => Err(CliError::Other(e.to_string())),
                }
            }
            Input::Plain(lines) => lines
                .next_line()
                .await
                .map_err(|e| CliError::Other(e.to_string())),
        }
    }
}

fn new_editor() -> Result<rustyline::DefaultEditor, CliError> {
    rustyline::DefaultEditor::new().map_err(|e| CliError::Other(format!("line editor: {e}")))
}

async fn chat(
    mut agent: Agent,
    tokens: Arc<dyn TokenProvider>,
    user: Option<Arc<UserSession>>,
) -> Result<(), CliError> {
    use tokio::io::AsyncBufReadExt;
    report_unavailable(&agent);
    let mut input = if std::io::stdin().is_terminal() {
        Input::Editor(Box::new(new_editor()?))
    } else {
        Input::Plain(tokio::io::BufReader::new(tokio::io::stdin()).lines())
    };
    println!(
        "agentid agent: {} tool(s) from {} MCP server(s). Commands: /tools /whoami /clear /exit",
        agent.toolbox.names.len(),
        agent.toolbox.servers.len() - agent.toolbox.unavailable.len()
    );
    while let Some(line) = input.next("you> ").await? {
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/clear" => {
                agent.clear();
                println!("(conversation cleared)");
            }
            "/tools" => {
                for l in agent.toolbox.describe() {
                    println!("{l}");
                }
            }
            "/whoami" => {
                if let Some(api) = agent.llm_api() {
                    let _ = tokens.token(&api, false).await;
                }
                print!("{}", whoami(&tokens, user.as_deref()).await);
            }
            q if q.starts_with('/') => {
                println!("unknown command {q}; try /tools /whoami /clear /exit")
            }
            q => {
                let mut printed = false;
                let mut on_event = |e: Event| print_event(e, &mut printed);
                print!("agent> ");
                let _ = std::io::stdout().flush();
                match agent.ask(q, &mut on_event).await {
                    Ok(answer) => {
                        if !printed {
                            print!("{answer}");
                        }
                        println!();
                    }
                    Err(e) => {
                        println!();
                        eprintln!("error: {e}");
                    }
                }
            }
        }
    }
    for s in &agent.toolbox.servers {
        s.close().await;
    }
    Ok(())
}
