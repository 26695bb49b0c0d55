-- Directory writes through the Graph-compatible API are audited too (directory.md §5.8).
ALTER TABLE audit_events ADD COLUMN category TEXT;
ALTER TABLE audit_events ADD COLUMN operation TEXT;
ALTER TABLE audit_events ADD COLUMN target TEXT;
