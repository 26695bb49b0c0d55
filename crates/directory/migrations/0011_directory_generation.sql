-- The directory generation (docs/performance.md §3.1): bumped by triggers (created at connect,
-- their syntax differs between SQLite and PostgreSQL) on every write to the tables the token
-- path reads, so that those reads can be cached and checked with one query.
CREATE TABLE directory_generation (
    id INTEGER PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO directory_generation (id, n) VALUES (1, 0);
