-- Batch jobs, their lines, files, and the persistent translation memory (PostgreSQL dialect; the same
-- version as sqlite/0001_jobs.sql). Times are seconds since the epoch (bigint for the OpenAI-visible ones,
-- double precision for leases and LRU).

CREATE TABLE files (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    job_id      TEXT,                          -- output / error files: the job whose lines they are
    kind        TEXT NOT NULL DEFAULT 'upload', -- upload | output | error
    owner       TEXT,                          -- API key id (keys feature), NULL when keys are off
    content     BYTEA,                         -- uploads only
    seq         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    seq               BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    input_file_id     TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    metadata          TEXT,                    -- JSON object
    in_progress_at    BIGINT,
    finalizing_at     BIGINT,
    completed_at      BIGINT,
    failed_at         BIGINT,
    expired_at        BIGINT,
    cancelling_at     BIGINT,
    cancelled_at      BIGINT,
    output_file_id    TEXT,
    error_file_id     TEXT,
    errors            TEXT,                    -- JSON list (batch-level errors)
    total             INTEGER NOT NULL DEFAULT 0,
    completed         INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    u_sentences            BIGINT NOT NULL DEFAULT 0,
    u_characters           BIGINT NOT NULL DEFAULT 0,
    u_prompt_tokens        DOUBLE PRECISION NOT NULL DEFAULT 0,
    u_cached_prompt_tokens DOUBLE PRECISION NOT NULL DEFAULT 0,
    u_completion_tokens    DOUBLE PRECISION NOT NULL DEFAULT 0,
    u_engine_prompts       DOUBLE PRECISION NOT NULL DEFAULT 0,
    u_cost                 DOUBLE PRECISION NOT NULL DEFAULT 0,
    u_baseline_cost        DOUBLE PRECISION NOT NULL DEFAULT 0,
    u_memory_hits          BIGINT NOT NULL DEFAULT 0,
    owner             TEXT
);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE job_lines (
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    line_no       INTEGER NOT NULL,            -- 1-based line of the input file
    custom_id     TEXT,
    body          TEXT,                        -- the request body (JSON), NULL for lines that failed validation
    state         TEXT NOT NULL,               -- pending | claimed | done | failed | cancelled
    lease_owner   TEXT,
    lease_expires DOUBLE PRECISION,
    attempts      INTEGER NOT NULL DEFAULT 0,
    output        TEXT,                        -- the output or error file's line (JSON)
    PRIMARY KEY (job_id, line_no)
);
CREATE INDEX job_lines_runnable ON job_lines (job_id, line_no) WHERE state IN ('pending', 'claimed');
CREATE INDEX job_lines_owner ON job_lines (lease_owner) WHERE state = 'claimed';

CREATE TABLE translation_memory (
    signature  TEXT NOT NULL,
    source     TEXT NOT NULL,                  -- normalised source sentence
    target     TEXT NOT NULL,
    hits       BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    last_used  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (signature, source)
);
CREATE INDEX translation_memory_lru ON translation_memory (last_used);

-- The memory's size, kept in the same transactions as its rows (COUNT(*) on every write would scan the table).
CREATE TABLE translation_memory_count (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    n  BIGINT NOT NULL
);
INSERT INTO translation_memory_count VALUES (TRUE, 0);
