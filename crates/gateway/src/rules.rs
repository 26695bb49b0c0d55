//! CEL rules: `authorization`, `mcpAuthorization`, log fields (gateway.md §7).
