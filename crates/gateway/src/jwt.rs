//! Inbound JWT validation and JWKS caches (gateway.md §6).
