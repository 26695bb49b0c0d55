//! The console's pages (docs/console.md §6): askama templates under `templates/console/`,
//! HTML-escaped wherever they print a value (display names are attacker input), sent with a
//! strict CSP: nothing loads but the console's own stylesheet and images, no script runs,
//! forms post only to the STS, and no page may be framed.

use super::model::*;
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet, served at `/console/static/console.css`.
pub const STYLESHEET: &str = include_str!("../../templates/console/console.css");

/// What every signed-in page shows in its header.
pub struct Chrome<'a> {
    pub upn: &'a str,
    pub tenant: &'a str,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "console/home.html")]
pub struct Home<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub counts: Vec<(&'static str, &'static str, usize)>,
}

#[derive(Template)]
#[template(path = "console/blueprints.html")]
pub struct Blueprints<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub rows: Vec<BlueprintRow>,
}

#[derive(Template)]
#[template(path = "console/blueprint.html")]
pub struct Blueprint<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub b: BlueprintDetail,
}

#[derive(Template)]
#[template(path = "console/consents.html")]
pub struct Consents<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub rows: Vec<ConsentRow>,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub struct Users<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub rows: Vec<UserRow>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct Audit<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub f: AuditFilters,
    pub rows: Vec<EventRow>,
}

#[derive(Template)]
#[template(path = "console/chain.html")]
pub struct Chain<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub uti: &'a str,
    /// Server-rendered, escaped SVG of the chain (trail), when it can be drawn.
    pub svg: Option<String>,
    pub hops: Vec<HopRow>,
    pub events: Vec<EventRow>,
}

/// A confirmation page: what will happen, and the form that does it.
#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct Confirm<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub lines: Vec<String>,
    pub action: String,
    pub button: &'a str,
    pub back: String,
    /// A text field to fill in (label, name), for the create actions.
    pub field: Option<(&'a str, &'a str)>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/notice.html")]
pub struct Notice<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub paragraphs: &'a [&'a str],
    /// The CSRF token of a session that may only sign out.
    pub signout_csrf: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "console/choose_tenant.html")]
pub struct ChooseTenant<'a> {
    pub title: &'a str,
    pub chrome: Option<Chrome<'a>>,
    pub error: Option<&'a str>,
}

/// Renders `page` with the console's security headers.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    let (status, body) = match page.render() {
        Ok(body) => (status, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a console page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The console could not render this page.".into(),
            )
        }
    };
    let mut r = (status, body).into_response();
    secure(&mut r, "text/html; charset=utf-8");
    r
}

/// The headers of every console response.
pub fn secure(r: &mut Response, content_type: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub fn notice(status: StatusCode, title: &str, paragraphs: &[&str]) -> Response {
    html(
        status,
        &Notice {
            title,
            chrome: None,
            paragraphs,
            signout_csrf: None,
        },
    )
}

/// 403 for a signed-in user without a directory role.
pub fn forbidden(upn: &str, csrf: &str) -> Response {
    let line = format!(
        "You are signed in as {upn}, who holds neither the Global Administrator nor the Agent ID Administrator role."
    );
    html(
        StatusCode::FORBIDDEN,
        &Notice {
            title: "Access denied",
            chrome: None,
            paragraphs: &[
                &line,
                "Ask an administrator of your tenant for one of these roles.",
            ],
            signout_csrf: Some(csrf),
        },
    )
}

/// What a console handler answers: the page, or the page that stops it early (sign-in redirect,
/// not found, a failure), so handlers use `?` on the gate and the lookups.
pub type Reply = Result<Response, Response>;

pub fn not_found(what: &str) -> Response {
    notice(StatusCode::NOT_FOUND, "Not found", &[what])
}

pub fn bad_form() -> Response {
    notice(
        StatusCode::BAD_REQUEST,
        "Bad request",
        &["The form could not be read."],
    )
}

pub fn choose_tenant(error: Option<&str>) -> Response {
    html(
        if error.is_some() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        },
        &ChooseTenant {
            title: "Sign in to the console",
            chrome: None,
            error,
        },
    )
}

/// A failure of ours (storage): logged, and a generic page.
pub fn internal<E: std::fmt::Display>(e: E) -> Response {
    tracing::error!(error = %e, "console failed");
    notice(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        &["The console could not complete this request. Try again."],
    )
}

/// A 303 to a path of this STS (built by us, never request text).
pub fn redirect(to: &'static str) -> Response {
    redirect_to(to)
}

pub fn redirect_to(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";

    fn s() -> String {
        HOSTILE.to_string()
    }

    fn event() -> EventRow {
        EventRow {
            time: s(),
            source: s(),
            result: s(),
            refused: true,
            what: s(),
            reason: s(),
            who: s(),
            uti: Some(s()),
        }
    }

    /// Every template, every printed value hostile: nothing comes out as markup.
    #[test]
    fn every_value_a_console_page_prints_is_escaped() {
        let chrome = || {
            Some(Chrome {
                upn: HOSTILE,
                tenant: HOSTILE,
                csrf: HOSTILE,
            })
        };
        let pages = [
            Home {
                title: HOSTILE,
                chrome: chrome(),
                counts: vec![("Users", "/console/users", 1)],
            }
            .render(),
            Blueprints {
                title: HOSTILE,
                chrome: chrome(),
                rows: vec![BlueprintRow {
                    name: s(),
                    app_id: s(),
                    agents: 1,
                    created: s(),
                }],
            }
            .render(),
            Blueprint {
                title: HOSTILE,
                chrome: chrome(),
                b: BlueprintDetail {
                    name: s(),
                    app_id: s(),
                    object_id: s(),
                    agents: vec![AgentRow {
                        name: s(),
                        id: s(),
                        enabled: false,
                        sponsors: s(),
                    }],
                    fics: vec![FicRow {
                        name: s(),
                        issuer: s(),
                        subject: s(),
                        audience: s(),
                        k8s: Some((s(), s())),
                    }],
                    secrets: vec![SecretRow {
                        key_id: s(),
                        name: s(),
                        hint: s(),
                        expires: s(),
                    }],
                    owners: s(),
                    sponsors: s(),
                },
            }
            .render(),
            Consents {
                title: HOSTILE,
                chrome: chrome(),
                rows: vec![ConsentRow {
                    id: s(),
                    client: s(),
                    resource: s(),
                    scope: s(),
                    principal: s(),
                    given_by: s(),
                }],
            }
            .render(),
            Users {
                title: HOSTILE,
                chrome: chrome(),
                rows: vec![UserRow {
                    id: s(),
                    upn: s(),
                    name: s(),
                    kind: "user",
                    roles: s(),
                    enabled: true,
                    revoked: s(),
                }],
            }
            .render(),
            Audit {
                title: HOSTILE,
                chrome: chrome(),
                f: AuditFilters {
                    agent: s(),
                    user: s(),
                    blueprint: s(),
                    decision: s(),
                    since: s(),
                    decisions: vec![("", "Any")],
                    error: Some(s()),
                },
                rows: vec![event()],
            }
            .render(),
            Chain {
                title: HOSTILE,
                chrome: chrome(),
                uti: HOSTILE,
                svg: Some(String::new()),
                hops: vec![HopRow {
                    kind: s(),
                    who: s(),
                    details: s(),
                }],
                events: vec![event()],
            }
            .render(),
            Confirm {
                title: HOSTILE,
                chrome: chrome(),
                lines: vec![s()],
                action: s(),
                button: HOSTILE,
                back: s(),
                field: Some((HOSTILE, HOSTILE)),
                error: Some(s()),
            }
            .render(),
            Notice {
                title: HOSTILE,
                chrome: chrome(),
                paragraphs: &[HOSTILE],
                signout_csrf: Some(HOSTILE),
            }
            .render(),
            ChooseTenant {
                title: HOSTILE,
                chrome: None,
                error: Some(HOSTILE),
            }
            .render(),
        ];
        for page in pages {
            let html = page.expect("renders");
            for raw in ["<script>alert", "<img src=x", "\"'><"] {
                assert!(!html.contains(raw), "{raw:?} unescaped: {html}");
            }
        }
    }

    #[test]
    fn pages_carry_the_strict_csp() {
        let r = notice(StatusCode::OK, "t", &["p"]);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert!(!CSP.contains("unsafe"));
    }
}
