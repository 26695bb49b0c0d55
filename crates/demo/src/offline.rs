//! What the offline model answers: a pure function of the chat request, so the same
//! conversation always gets the same reply. It calls a tool when the user's last message names
//! one of the offered tools or matches a small rule table, summarises tool results it is given,
//! and otherwise says plainly that it only repeats what it was told.

use serde_json::{Map, Value};

/// Name of the model in every response: honest about what answers.
pub const MODEL_NAME: &str = "agentid-offline";

/// One chat message, reduced to what the model looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    /// The text of `content` (string, or the `text` parts of an array).
    pub text: String,
    /// For `tool` messages: which call this is the result of.
    pub tool_call_id: Option<String>,
    /// For `assistant` messages: the calls it made, as (id, function name, arguments).
    pub tool_calls: Vec<(String, String, String)>,
}

/// An offered function tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The JSON schema of the arguments (`{}` when not given).
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    /// A function call; `arguments` is a JSON object serialised as a string, as OpenAI sends it.
    Call {
        name: String,
        arguments: String,
    },
}

/// Decides the answer to a conversation.
pub fn answer(messages: &[Message], tools: &[Tool]) -> Reply {
    let Some(last) = messages.last() else {
        return Reply::Text(format!(
            "{MODEL_NAME} model: there is nothing to answer yet."
        ));
    };
    if last.role == "tool" {
        return Reply::Text(summarise_tool_results(messages));
    }
    if last.role == "user" {
        if let Some((name, args)) = choose_tool(&last.text, tools) {
            return Reply::Call {
                name,
                arguments: Value::Object(args).to_string(),
            };
        }
        return Reply::Text(echo(&last.text, tools));
    }
    match messages.iter().rev().find(|m| m.role == "user") {
        Some(m) => Reply::Text(echo(&m.text, tools)),
        None => Reply::Text(format!(
            "{MODEL_NAME} model: there is nothing to answer yet."
        )),
    }
}

fn echo(text: &str, tools: &[Tool]) -> String {
    let mut s = format!("{MODEL_NAME} model: you said \"{}\".", text.trim());
    if !tools.is_empty() {
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        s.push_str(&format!(
            " I am an offline demo model: name one of the offered tools ({}) and I will call it.",
            names.join(", ")
        ));
    }
    s
}

/// "The tool whoami says: …" for each tool result at the end of the conversation.
fn summarise_tool_results(messages: &[Message]) -> String {
    let start = messages
        .iter()
        .rposition(|m| m.role != "tool")
        .map(|i| i + 1)
        .unwrap_or(0);
    let parts: Vec<String> = messages[start..]
        .iter()
        .map(|m| {
            let name = m
                .tool_call_id
                .as_deref()
                .and_then(|id| {
                    messages[..start]
                        .iter()
                        .flat_map(|a| a.tool_calls.iter())
                        .find(|(cid, _, _)| cid == id)
                        .map(|(_, name, _)| name.as_str())
                })
                .unwrap_or("that was called");
            let text = m.text.trim();
            let text = if text.is_empty() { "(nothing)" } else { text };
            format!("The tool {name} says: {text}")
        })
        .collect();
    parts.join("\n")
}

/// Byte ranges where `needle` occurs in `hay` as a whole word (not inside a longer name).
fn word_matches(hay: &str, needle: &str) -> Vec<(usize, usize)> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    if needle.is_empty() {
        return out;
    }
    let mut from = 0;
    while let Some(pos) = hay[from..].find(needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before_ok = hay[..start].chars().next_back().is_none_or(|c| !is_word(c));
        let after_ok = hay[end..].chars().next().is_none_or(|c| !is_word(c));
        if before_ok && after_ok {
            out.push((start, end));
        }
        from = start + needle.chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// The part of a tool name after its last `__` or `_` separator (`mcp__whoami` → `whoami`,
/// `list_notes` → `notes`), when there is one.
fn short_name(name: &str) -> Option<&str> {
    let i = name.rfind('_')?;
    let s = &name[i + 1..];
    (s.len() >= 3).then_some(s)
}

/// What follows a mention, as the text argument: "add a note: buy milk" → "buy milk".
fn remainder(original: &str, end: usize) -> String {
    let mut r = original.get(end..).unwrap_or("").trim();
    loop {
        let before = r;
        r = r
            .trim_start_matches([':', '-', ',', '=', '>', ' '])
            .trim_start();
        for filler in ["that ", "saying ", "which says ", "with text ", "text "] {
            // `get` rather than slicing: the prefix may end inside a multi-byte character.
            if r.get(..filler.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(filler))
            {
                r = &r[filler.len()..];
            }
        }
        if r == before {
            break;
        }
    }
    let r = r.trim();
    let quoted = r.len() >= 2
        && ((r.starts_with('"') && r.ends_with('"')) || (r.starts_with('\'') && r.ends_with('\'')));
    if quoted {
        r[1..r.len() - 1].trim().to_string()
    } else {
        r.to_string()
    }
}

/// Arguments for `tool` given the text after its mention, or `None` when the tool needs
/// arguments this text cannot provide.
fn build_args(tool: &Tool, rest: &str) -> Option<Map<String, Value>> {
    let props = tool
        .parameters
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = tool
        .parameters
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let is_string =
        |k: &str| props.get(k).and_then(|p| p.get("type")) == Some(&Value::from("string"));
    let strings: Vec<&str> = props
        .keys()
        .map(String::as_str)
        .filter(|k| is_string(k))
        .collect();
    // The one slot free text can fill: `text`, else the only required string, else the only string.
    let slot = if is_string("text") {
        Some("text")
    } else {
        let req_strings: Vec<&str> = required.iter().copied().filter(|k| is_string(k)).collect();
        match (req_strings.as_slice(), strings.as_slice()) {
            ([one], _) => Some(*one),
            ([], [one]) => Some(*one),
            _ => None,
        }
    };
    let mut args = Map::new();
    if let Some(slot) = slot
        && !rest.is_empty()
    {
        args.insert(slot.to_string(), Value::from(rest));
    }
    if required.iter().any(|k| !args.contains_key(*k)) {
        return None;
    }
    Some(args)
}

fn find_tool<'a>(tools: &'a [Tool], suffix: &str) -> Option<&'a Tool> {
    tools
        .iter()
        .find(|t| t.name.to_lowercase().ends_with(suffix))
}

/// The tool call for a user message, if it names a tool or matches a rule.
fn choose_tool(text: &str, tools: &[Tool]) -> Option<(String, Map<String, Value>)> {
    // Lower-casing ASCII only keeps byte offsets valid for `text`.
    let lower = text.to_ascii_lowercase();
    let call = |tool: &Tool, end: usize| {
        build_args(tool, &remainder(text, end)).map(|a| (tool.name.clone(), a))
    };

    // 1. A tool named in full; the longest name wins (`list_notes` over `notes`).
    let mut by_len: Vec<&Tool> = tools.iter().collect();
    by_len.sort_by_key(|t| std::cmp::Reverse(t.name.len()));
    for tool in &by_len {
        if let Some(&(_, end)) = word_matches(&lower, &tool.name.to_ascii_lowercase()).first()
            && let Some(c) = call(tool, end)
        {
            return Some(c);
        }
    }

    // 2. The rule table.
    let words: String = lower
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let words = format!(
        " {} ",
        words.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    if (words.contains(" who am i ") || words.contains(" whoami "))
        && let Some(t) = find_tool(tools, "whoami")
        && let Some(c) = call(t, text.len())
    {
        return Some(c);
    }
    if let Some(t) = find_tool(tools, "add_note") {
        for (_, end) in word_matches(&lower, "note") {
            if !remainder(text, end).is_empty()
                && let Some(c) = call(t, end)
            {
                return Some(c);
            }
        }
    }
    if words.contains(" notes ")
        && let Some(t) = find_tool(tools, "list_notes")
        && let Some(c) = call(t, text.len())
    {
        return Some(c);
    }
    if words.contains(" profile ")
        && let Some(t) = find_tool(tools, "get_my_profile")
        && let Some(c) = call(t, text.len())
    {
        return Some(c);
    }

    // 3. A tool named by the part after its namespace or verb separator.
    for tool in &by_len {
        let Some(short) = short_name(&tool.name) else {
            continue;
        };
        if let Some(&(_, end)) = word_matches(&lower, &short.to_ascii_lowercase()).first()
            && let Some(c) = call(tool, end)
        {
            return Some(c);
        }
    }
    None
}

/// Deterministic usage: words, not tokens (there is no tokenizer here, and no pretending).
pub fn count_words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

pub fn prompt_words(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| {
            count_words(&m.text)
                + m.tool_calls
                    .iter()
                    .map(|(_, n, a)| count_words(n) + count_words(a))
                    .sum::<u64>()
        })
        .sum()
}

pub fn reply_words(r: &Reply) -> u64 {
    match r {
        Reply::Text(t) => count_words(t),
        Reply::Call { name, arguments } => count_words(name) + count_words(arguments),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(t: &str) -> Message {
        Message {
            role: "user".into(),
            text: t.into(),
            tool_call_id: None,
            tool_calls: vec![],
        }
    }

    fn tool(name: &str, parameters: Value) -> Tool {
        Tool {
            name: name.into(),
            parameters,
        }
    }

    fn demo_tools(prefix: &str) -> Vec<Tool> {
        let text =
            json!({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]});
        let none = json!({"type":"object","properties":{}});
        vec![
            tool(&format!("{prefix}whoami"), none.clone()),
            tool(&format!("{prefix}get_my_profile"), none.clone()),
            tool(&format!("{prefix}add_note"), text),
            tool(&format!("{prefix}list_notes"), none),
        ]
    }

    fn call(name: &str, args: Value) -> Reply {
        Reply::Call {
            name: name.into(),
            arguments: args.to_string(),
        }
    }

    #[test]
    fn rule_table_and_names() {
        for prefix in ["", "demo__", "mcp_"] {
            let tools = demo_tools(prefix);
            let t = |s: &str| answer(&[user(s)], &tools);
            let n = |s: &str| format!("{prefix}{s}");
            assert_eq!(t("Who am I?"), call(&n("whoami"), json!({})));
            assert_eq!(t("run whoami please"), call(&n("whoami"), json!({})));
            assert_eq!(
                t("Show me my profile"),
                call(&n("get_my_profile"), json!({}))
            );
            assert_eq!(
                t("Add a note: buy milk"),
                call(&n("add_note"), json!({"text": "buy milk"}))
            );
            assert_eq!(
                t("note that \"the demo works\""),
                call(&n("add_note"), json!({"text": "the demo works"}))
            );
            assert_eq!(t("list my notes"), call(&n("list_notes"), json!({})));
            assert_eq!(t("what are my notes?"), call(&n("list_notes"), json!({})));
        }
        let tools = demo_tools("");
        assert_eq!(
            answer(&[user("call get_my_profile")], &tools),
            call("get_my_profile", json!({}))
        );
        assert_eq!(
            answer(&[user("add_note remember the keys")], &tools),
            call("add_note", json!({"text": "remember the keys"}))
        );
        // "note" without text cannot fill add_note's required argument: no call.
        assert!(matches!(answer(&[user("a note")], &tools), Reply::Text(_)));
    }

    #[test]
    fn only_offered_tools_are_called() {
        let r = answer(&[user("who am I?")], &[]);
        assert_eq!(
            r,
            Reply::Text("agentid-offline model: you said \"who am I?\".".into())
        );
        let tools = vec![tool(
            "echo",
            json!({"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}),
        )];
        assert!(
            matches!(answer(&[user("who am I?")], &tools), Reply::Text(t) if t.contains("(echo)"))
        );
        assert_eq!(
            answer(&[user("echo hello world")], &tools),
            call("echo", json!({"message": "hello world"}))
        );
        // "whoamireally" is not the tool "whoami".
        assert!(matches!(
            answer(&[user("whoamireally")], &demo_tools("")),
            Reply::Text(_)
        ));
    }

    #[test]
    fn tool_results_are_summarised_by_name() {
        let msgs = vec![
            user("who am i"),
            Message {
                role: "assistant".into(),
                text: String::new(),
                tool_call_id: None,
                tool_calls: vec![("call_1".into(), "whoami".into(), "{}".into())],
            },
            Message {
                role: "tool".into(),
                text: "agent A acting on behalf of demo@agentid.local".into(),
                tool_call_id: Some("call_1".into()),
                tool_calls: vec![],
            },
        ];
        assert_eq!(
            answer(&msgs, &demo_tools("")),
            Reply::Text(
                "The tool whoami says: agent A acting on behalf of demo@agentid.local".into()
            )
        );
        assert_eq!(prompt_words(&msgs), 3 + 2 + 7);
    }

    #[test]
    fn unicode_does_not_break_matching() {
        let tools = demo_tools("");
        assert!(matches!(
            answer(&[user("ÄÖÜ ß 日本 note")], &tools),
            Reply::Text(_)
        ));
        assert_eq!(
            answer(&[user("note: café ☕")], &tools),
            call("add_note", json!({"text": "café ☕"}))
        );
    }
}
