//! The delegation chain drawn as a picture (docs/audit.md §5): one box per hop, top to bottom,
//! arrows between them, allow in green and deny in red. Server-rendered SVG with no script and
//! no external references; every piece of directory text is escaped (display names, UPNs, routes
//! and tool names are attacker input) and cut to a bounded length.

use agentid_directory::trail::{Chain, Hop, HopKind, Outcome};
use std::fmt::Write;

const WIDTH: u32 = 760;
const MARGIN: u32 = 16;
const TITLE_H: u32 = 40;
const LINE_H: u32 = 16;
const GAP: u32 = 28;
/// Characters of a title or fact shown at most; the rest is elided.
const MAX_CHARS: usize = 96;
/// Facts shown per hop at most.
const MAX_FACTS: usize = 12;

/// Text for an SVG text node or attribute: XML-escaped, characters XML forbids replaced, cut to
/// `max` characters.
pub fn escape(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 2));
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 allows no other control characters; bidi overrides would let a name
            // display as something else.
            c if c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c) =>
            {
                out.push('?')
            }
            c => out.push(c),
        }
    }
    out
}

fn colours(h: &Hop) -> (&'static str, &'static str) {
    match h.outcome {
        Outcome::Allow => ("#1a7f37", "#dafbe1"),
        Outcome::Deny => ("#cf222e", "#ffebe9"),
        Outcome::Info => match h.kind {
            HopKind::SignIn | HopKind::Consent => ("#8250df", "#fbefff"),
            HopKind::Credential => ("#9a6700", "#fff8c5"),
            _ => ("#0969da", "#ddf4ff"),
        },
    }
}

fn box_height(h: &Hop) -> u32 {
    TITLE_H + LINE_H * h.facts.len().min(MAX_FACTS) as u32 + 8
}

/// The chain as a standalone SVG document.
pub fn render(chain: &Chain) -> String {
    let height = MARGIN * 2
        + 24
        + chain.hops.iter().map(|h| box_height(h) + GAP).sum::<u32>()
        + if chain.truncated { LINE_H } else { 0 };
    let mut s = String::new();
    let label = escape(&format!("Delegation chain of token {}", chain.uti), 200);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="chain-title" font-family="system-ui, sans-serif" font-size="13"><title id="chain-title">{label}</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="5" refY="9" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,0 L5,10 z" fill="#57606a"/></marker></defs><rect width="100%" height="100%" fill="#ffffff"/><text x="{MARGIN}" y="{}" font-size="15" font-weight="600">{label}</text>"##,
        MARGIN + 14
    );
    let mut y = MARGIN + 24;
    let n = chain.hops.len();
    for (i, h) in chain.hops.iter().enumerate() {
        let (stroke, fill) = colours(h);
        let bh = box_height(h);
        let w = WIDTH - 2 * MARGIN;
        let mark = match h.outcome {
            Outcome::Allow => " ✓ allowed",
            Outcome::Deny => " ✗ refused",
            Outcome::Info => "",
        };
        let _ = write!(
            s,
            r##"<g class="hop hop-{kind}"><rect x="{MARGIN}" y="{y}" width="{w}" height="{bh}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/><text x="{tx}" y="{ky}" font-size="11" fill="{stroke}" font-weight="600">{klabel}{mark}</text><text x="{tx}" y="{ty}" font-weight="600" fill="#1f2328">{title}</text>"##,
            kind = kind_class(h.kind),
            sw = if h.outcome == Outcome::Info { 1 } else { 2 },
            tx = MARGIN + 10,
            ky = y + 15,
            ty = y + 32,
            klabel = escape(h.kind.label(), MAX_CHARS),
            title = escape(&h.title, MAX_CHARS),
        );
        for (j, f) in h.facts.iter().take(MAX_FACTS).enumerate() {
            let fy = y + TITLE_H + 8 + LINE_H * j as u32;
            let _ = write!(
                s,
                r##"<text x="{x}" y="{fy}" fill="#57606a">{name}</text><text x="{vx}" y="{fy}" fill="#1f2328">{value}</text>"##,
                x = MARGIN + 10,
                vx = MARGIN + 210,
                name = escape(&f.name, 32),
                value = escape(&f.value, 80),
            );
        }
        s.push_str("</g>");
        y += bh;
        if i + 1 < n {
            let x = WIDTH / 2;
            let _ = write!(
                s,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#57606a" stroke-width="1.5" marker-end="url(#arrow)"/>"##,
                y + 2,
                y + GAP - 4
            );
        }
        y += GAP;
    }
    if chain.truncated {
        let _ = write!(
            s,
            r##"<text x="{MARGIN}" y="{y}" fill="#57606a">… more tokens or decisions than shown</text>"##
        );
    }
    s.push_str("</svg>");
    s
}

fn kind_class(k: HopKind) -> &'static str {
    match k {
        HopKind::SignIn => "sign-in",
        HopKind::Consent => "consent",
        HopKind::Credential => "credential",
        HopKind::ExchangeToken => "t1",
        HopKind::UserToken => "user-token",
        HopKind::AgentToken => "agent-token",
        HopKind::AppToken => "app-token",
        HopKind::Decision => "decision",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentid_directory::trail::Fact;

    fn hop(kind: HopKind, title: &str, outcome: Outcome, facts: Vec<Fact>) -> Hop {
        Hop {
            kind,
            time: 1_700_000_000,
            title: title.into(),
            id: None,
            outcome,
            facts,
        }
    }

    fn chain(hops: Vec<Hop>) -> Chain {
        Chain {
            tenant_id: "t".into(),
            uti: "u<ti>".into(),
            hops,
            truncated: true,
        }
    }

    const HOSTILE: [&str; 8] = [
        "<script>alert(1)</script>",
        "\"/><foreignObject><iframe src=x>",
        "' onload='alert(1)",
        "]]><![CDATA[",
        "&lt;already&gt; &amp;",
        "a\u{0}b\u{1b}[31mred\u{7}",
        "evil\u{202e}gnp.exe",
        "<!ENTITY x SYSTEM \"file:///etc/passwd\">&x;",
    ];

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        for bad in HOSTILE {
            let svg = render(&chain(vec![
                hop(
                    HopKind::SignIn,
                    bad,
                    Outcome::Info,
                    vec![Fact::new(bad, bad)],
                ),
                hop(HopKind::Decision, bad, Outcome::Deny, vec![]),
            ]));
            assert!(!svg.contains("<script"), "{bad}: {svg}");
            assert!(!svg.contains("<foreignObject"), "{bad}");
            assert!(!svg.contains("<iframe"), "{bad}");
            assert!(!svg.contains("<!ENTITY"), "{bad}");
            assert!(!svg.contains("' onload"), "{bad}");
            assert!(!svg.contains("<![CDATA["), "{bad}");
            assert!(!svg.chars().any(|c| c.is_control()), "{bad}");
            assert!(!svg.contains('\u{202e}'), "{bad}");
            // The only elements are the renderer's own.
            for tag in svg.split('<').skip(1) {
                let name: String = tag
                    .trim_start_matches('/')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                assert!(
                    [
                        "svg", "title", "defs", "marker", "path", "rect", "text", "g", "line"
                    ]
                    .contains(&name.as_str()),
                    "{bad}: unexpected element {name}"
                );
            }
        }
    }

    #[test]
    fn escape_cuts_long_text() {
        let long = "x".repeat(500);
        assert_eq!(escape(&long, 10), format!("{}…", "x".repeat(10)));
        assert_eq!(escape("a&b", 10), "a&amp;b");
        assert_eq!(escape("<&>\"'", 10), "&lt;&amp;&gt;&quot;&#39;");
    }

    #[test]
    fn allow_and_deny_have_their_colours_and_marks() {
        let svg = render(&chain(vec![
            hop(HopKind::Decision, "ok", Outcome::Allow, vec![]),
            hop(HopKind::Decision, "no", Outcome::Deny, vec![]),
        ]));
        assert!(svg.contains("#1a7f37") && svg.contains("✓ allowed"));
        assert!(svg.contains("#cf222e") && svg.contains("✗ refused"));
        assert_eq!(
            svg.matches("marker-end").count(),
            1,
            "one arrow between two hops"
        );
        assert!(svg.contains("more tokens or decisions"));
        assert!(svg.contains("u&lt;ti&gt;"));
    }

    #[test]
    fn facts_are_bounded() {
        let facts: Vec<Fact> = (0..100).map(|i| Fact::new("n", format!("v{i}"))).collect();
        let svg = render(&chain(vec![hop(
            HopKind::AgentToken,
            "t",
            Outcome::Info,
            facts,
        )]));
        assert!(svg.contains(">v11<"));
        assert!(!svg.contains(">v12<"));
    }
}
