-- API keys (stored as SHA-256 of the key, never the key) and per-key usage by period (SQLite dialect).
-- Periods are UTC calendar days ('2026-11-27') and months ('2026-11'). Times are seconds since the epoch.

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'user', 'dashboard')),
    rate_requests   REAL,               -- requests per second (token bucket), NULL: unlimited
    rate_chars      REAL,               -- characters per second (token bucket), NULL: unlimited
    chars_per_day   INTEGER,            -- quota, NULL: unlimited
    chars_per_month INTEGER,            -- quota, NULL: unlimited
    created_at      REAL NOT NULL,
    revoked_at      REAL
);
CREATE INDEX api_keys_name ON api_keys (name);

CREATE TABLE api_key_usage (
    key_id      TEXT NOT NULL,
    period      TEXT NOT NULL,
    characters  INTEGER NOT NULL DEFAULT 0,
    sentences   INTEGER NOT NULL DEFAULT 0,
    requests    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period)
);
