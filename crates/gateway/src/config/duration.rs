//! Durations as AgentGateway writes them: `500ms`, `30s`, `10m`, `1h`, combinable (`1m30s`).

use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("duration {text:?} needs a unit (ms, s, m, h)"))?;
        if digits == 0 {
            return Err(format!(
                "duration {text:?} is not a number followed by a unit"
            ));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {text:?} has a bad number"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            other => {
                return Err(format!(
                    "duration {text:?} has unknown unit {other:?} (use ms, s, m, h)"
                ));
            }
        };
        total += Duration::from_secs_f64(seconds);
    }
    Ok(total)
}

/// Renders a duration the way the config file writes it (for `--print-effective`).
pub fn render(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut s = (ms / 1000) as u64;
    let mut out = String::new();
    if s >= 3600 {
        out.push_str(&format!("{}h", s / 3600));
        s %= 3600;
    }
    if s >= 60 {
        out.push_str(&format!("{}m", s / 60));
        s %= 60;
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_combined_units() {
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("3m0s").unwrap(), Duration::from_secs(180));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse("10").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("").is_err());
        assert_eq!(render(Duration::from_secs(90)), "1m30s");
    }
}
