//! The browser sign-in kit (docs/sts.md §11): everything the `/devicelogin` pages and `/authorize`
//! share — pages rendered from templates, the two cookies, the browser flow and its CSRF token,
//! the SSO session, and consent. Both import it; it imports neither of them.

pub mod consent;
pub mod cookies;
pub mod csrf;
pub mod flow;
pub mod page;
pub mod session;
