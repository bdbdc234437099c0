-- API keys (stored as SHA-256 of the key, never the key) and per-key usage by period (PostgreSQL dialect; the
-- same version as sqlite/0002_keys.sql). Periods are UTC calendar days ('2026-11-27') and months ('2026-11').
-- Times are seconds since the epoch. Several gateways add usage to the same rows: each add is one upsert.

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'user', 'dashboard')),
    rate_requests   DOUBLE PRECISION,       -- requests per second (token bucket), NULL: unlimited
    rate_chars      DOUBLE PRECISION,       -- characters per second (token bucket), NULL: unlimited
    chars_per_day   BIGINT,                 -- quota, NULL: unlimited
    chars_per_month BIGINT,                 -- quota, NULL: unlimited
    created_at      DOUBLE PRECISION NOT NULL,
    revoked_at      DOUBLE PRECISION
);
CREATE INDEX api_keys_name ON api_keys (name);

CREATE TABLE api_key_usage (
    key_id      TEXT NOT NULL,
    period      TEXT NOT NULL,
    characters  BIGINT NOT NULL DEFAULT 0,
    sentences   BIGINT NOT NULL DEFAULT 0,
    requests    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period)
);
