//! Agent and user identity derived from validated claims (gateway.md §7.3–7.4).
