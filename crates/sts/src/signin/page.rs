//! The sign-in pages (docs/sts.md §11): each is an askama template under `templates/signin/`,
//! checked when the crate compiles and HTML-escaped wherever it prints a value, so directory text
//! (application and API names, scope names, UPNs) and request text (redirect URIs, `state`) can
//! never become markup. Every page goes out with the same security headers.

use super::consent::{Missing, MissingScope};
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Styles are inline in the page; nothing else loads, and no page may be framed.
const CSP: &str = "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// The code form of `/devicelogin`.
#[derive(Template)]
#[template(path = "signin/enter_code.html")]
struct EnterCode<'a> {
    title: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

/// The password form, naming the application; with a live SSO session also "Continue as".
#[derive(Template)]
#[template(path = "signin/sign_in.html")]
struct SignIn<'a> {
    title: &'a str,
    csrf: &'a str,
    app: &'a str,
    /// The host of a client known only by its metadata document URL (docs/sts.md §16.4).
    unverified: Option<&'a str>,
    error: Option<&'a str>,
    /// The UPN of the user of the browser's SSO session.
    continue_as: Option<&'a str>,
}

/// Accept or cancel the scopes the user has not consented to yet.
#[derive(Template)]
#[template(path = "signin/consent.html")]
struct Consent<'a> {
    title: &'a str,
    csrf: &'a str,
    app: &'a str,
    unverified: Option<&'a str>,
    resource: &'a str,
    scopes: &'a [MissingScope],
    offline_access: bool,
    /// Offer consent for the whole organisation (administrators only).
    for_org: bool,
}

/// A scope only an administrator can grant, asked for by a user who is not one.
#[derive(Template)]
#[template(path = "signin/admin_approval.html")]
struct AdminApproval<'a> {
    title: &'a str,
    app: &'a str,
}

/// The end of a device login.
#[derive(Template)]
#[template(path = "signin/done.html")]
struct Done<'a> {
    title: &'a str,
    app: &'a str,
}

/// A consent form whose CSRF check failed, with a link back to the form.
#[derive(Template)]
#[template(path = "signin/not_verified.html")]
struct NotVerified<'a> {
    title: &'a str,
}

/// `response_mode=form_post`: the parameters for the client, posted to its redirect URI.
#[derive(Template)]
#[template(path = "signin/form_post.html")]
struct FormPost<'a> {
    title: &'a str,
    action: &'a str,
    fields: &'a [(&'a str, String)],
}

/// A page of plain text: a title and paragraphs.
#[derive(Template)]
#[template(path = "signin/notice.html")]
struct Notice<'a> {
    title: &'a str,
    paragraphs: &'a [&'a str],
}

/// The code form, with the message of a failed attempt.
pub fn enter_code(status: StatusCode, csrf: &str, error: Option<&str>) -> Response {
    let title = "Enter code";
    html(status, &EnterCode { title, csrf, error })
}

/// The sign-in form for `app`; `continue_as` is the UPN of the browser's SSO session;
/// `unverified` the host of a client known only by its web address.
pub fn sign_in(
    status: StatusCode,
    csrf: &str,
    app: &str,
    unverified: Option<&str>,
    error: Option<&str>,
    continue_as: Option<&str>,
) -> Response {
    let title = "Sign in";
    let page = SignIn {
        title,
        csrf,
        app,
        unverified,
        error,
        continue_as,
    };
    html(status, &page)
}

/// The consent form for what `missing` lists.
pub fn consent(
    csrf: &str,
    app: &str,
    unverified: Option<&str>,
    missing: &Missing,
    for_org: bool,
) -> Response {
    let page = Consent {
        title: "Permissions requested",
        csrf,
        app,
        unverified,
        resource: &missing.resource.display_name,
        scopes: &missing.scopes,
        offline_access: missing.offline_access,
        for_org,
    };
    html(StatusCode::OK, &page)
}

/// AADSTS90094: `app` asks for what only an administrator can grant.
pub fn admin_approval(app: &str) -> Response {
    let title = "Need admin approval";
    html(StatusCode::OK, &AdminApproval { title, app })
}

/// The end of a device login in `app`.
pub fn done(app: &str) -> Response {
    let title = "You're signed in";
    html(StatusCode::OK, &Done { title, app })
}

/// A consent form whose CSRF check failed.
pub fn not_verified() -> Response {
    let title = "Request not verified";
    html(StatusCode::FORBIDDEN, &NotVerified { title })
}

/// The form that posts `fields` to the client's redirect URI `action`.
pub fn form_post(action: &str, fields: &[(&str, String)]) -> Response {
    let title = "Continue";
    html(
        StatusCode::OK,
        &FormPost {
            title,
            action,
            fields,
        },
    )
}

/// Renders `page` with the security headers of every sign-in page.
fn html(status: StatusCode, page: &impl Template) -> Response {
    let (status, body) = match page.render() {
        Ok(body) => (status, body),
        // Rendering fails only if formatting a value fails; there is no page to show then.
        Err(e) => {
            tracing::error!(error = %e, "cannot render a sign-in page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "AADSTS50000: There was an error with our sign-in service. Try again.".into(),
            )
        }
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A page of plain text.
pub fn notice(status: StatusCode, title: &str, paragraphs: &[&str]) -> Response {
    html(status, &Notice { title, paragraphs })
}

/// An error the browser cannot be sent back to the client with: `AADSTS{code}: {message}`.
pub fn error(code: u32, message: &str) -> Response {
    notice(
        StatusCode::BAD_REQUEST,
        "Sign-in error",
        &[&format!("AADSTS{code}: {message}")],
    )
}

/// A failure of ours (storage): logged, and a generic page (AADSTS50000).
pub fn internal<E: std::fmt::Display>(e: E) -> Response {
    tracing::error!(error = %e, "devicelogin failed");
    notice(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        &["AADSTS50000: There was an error with our sign-in service. Try again."],
    )
}

/// A 303 to another sign-in page.
pub fn redirect(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directory and request text of an attacker: markup, both quotes, an entity.
    const HOSTILE: &str = "<script>alert(\"x\")</script><img src=x onerror='y'> &amp;";

    fn assert_escaped(html: &str) {
        for raw in ["<script", "<img", "onerror='", "\"x\"", " &amp;"] {
            assert!(!html.contains(raw), "{raw:?} unescaped: {html}");
        }
        assert!(
            html.contains("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;")
                && html.contains("onerror=&#39;y&#39;&#62; &#38;amp;"),
            "the text is shown, escaped: {html}"
        );
    }

    #[test]
    fn every_value_a_page_prints_is_escaped() {
        let scopes = [MissingScope {
            value: HOSTILE.into(),
            text: format!("{HOSTILE} (display)"),
            admin_only: false,
        }];
        let fields = [(HOSTILE, HOSTILE.to_string())];
        let (title, csrf, app, error) = (HOSTILE, HOSTILE, HOSTILE, Some(HOSTILE));
        let pages = [
            EnterCode { title, csrf, error }.render(),
            SignIn {
                title,
                csrf,
                app,
                unverified: Some(HOSTILE),
                error,
                continue_as: Some(HOSTILE),
            }
            .render(),
            Consent {
                title,
                csrf,
                app,
                unverified: Some(HOSTILE),
                resource: HOSTILE,
                scopes: &scopes,
                offline_access: true,
                for_org: true,
            }
            .render(),
            AdminApproval { title, app }.render(),
            Done { title, app }.render(),
            FormPost {
                title,
                action: HOSTILE,
                fields: &fields,
            }
            .render(),
            Notice {
                title,
                paragraphs: &[HOSTILE],
            }
            .render(),
        ];
        for page in pages {
            assert_escaped(&page.expect("renders"));
        }
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let r = error(50011, "x");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    }
}
