//! Server-sent events framing, shared by the LLM relay and the MCP upstream client.

/// End (exclusive) of the first complete event in `buf`, if one is complete.
pub fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The event's `data:` lines joined with `\n`, if it has any.
pub fn event_data(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event);
    let mut data: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_and_join_data_lines() {
        let buf = b"event: message\r\ndata: {\"a\":1}\r\n\r\ndata: [DONE]\n\n";
        let end = event_end(buf).unwrap();
        assert_eq!(event_data(&buf[..end]).as_deref(), Some("{\"a\":1}"));
        assert_eq!(event_data(&buf[end..]).as_deref(), Some("[DONE]"));
        assert_eq!(event_data(b"data: a\ndata: b\n\n").as_deref(), Some("a\nb"));
        assert_eq!(event_end(b"data: partial"), None);
    }
}
