//! Cross-site request checks of the sign-in forms (docs/sts.md §11.1).

use crate::state::StsState;
use agentid_directory::secrets::ct_eq;
use axum::http::{HeaderMap, header};

/// True for a post that did not come from our own form: a foreign `Origin`, or a CSRF token
/// (`posted`) that is not the one bound to the browser's flow or console session (`expected`).
pub fn forged(sts: &StsState, headers: &HeaderMap, expected: &str, posted: Option<&str>) -> bool {
    // Browsers send `Origin: null` for our own forms because every page carries
    // `Referrer-Policy: no-referrer`; the flow-bound CSRF token is what proves the form is ours.
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|o| o == sts.base || o == "null");
    let csrf_ok = posted.is_some_and(|c| ct_eq(c, expected));
    !(origin_ok && csrf_ok)
}
