-- Batch jobs, their lines, files, and the persistent translation memory (SQLite dialect).
-- Times are seconds since the epoch (integers for the OpenAI-visible ones, reals for leases and LRU).

CREATE TABLE files (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    job_id      TEXT,                          -- output / error files: the job whose lines they are
    kind        TEXT NOT NULL DEFAULT 'upload', -- upload | output | error
    owner       TEXT,                          -- API key id (keys feature), NULL when keys are off
    content     BLOB,                          -- uploads only
    seq         INTEGER NOT NULL
);
CREATE INDEX files_seq ON files (seq);

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    seq               INTEGER NOT NULL UNIQUE,
    input_file_id     TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status            TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    metadata          TEXT,                    -- JSON object
    in_progress_at    INTEGER,
    finalizing_at     INTEGER,
    completed_at      INTEGER,
    failed_at         INTEGER,
    expired_at        INTEGER,
    cancelling_at     INTEGER,
    cancelled_at      INTEGER,
    output_file_id    TEXT,
    error_file_id     TEXT,
    errors            TEXT,                    -- JSON list (batch-level errors)
    total             INTEGER NOT NULL DEFAULT 0,
    completed         INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    u_sentences            INTEGER NOT NULL DEFAULT 0,
    u_characters           INTEGER NOT NULL DEFAULT 0,
    u_prompt_tokens        REAL NOT NULL DEFAULT 0,
    u_cached_prompt_tokens REAL NOT NULL DEFAULT 0,
    u_completion_tokens    REAL NOT NULL DEFAULT 0,
    u_engine_prompts       REAL NOT NULL DEFAULT 0,
    u_cost                 REAL NOT NULL DEFAULT 0,
    u_baseline_cost        REAL NOT NULL DEFAULT 0,
    u_memory_hits          INTEGER NOT NULL DEFAULT 0,
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
    lease_expires REAL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    output        TEXT,                        -- the output or error file's line (JSON)
    PRIMARY KEY (job_id, line_no)
) WITHOUT ROWID;
CREATE INDEX job_lines_state ON job_lines (job_id, state);
CREATE INDEX job_lines_owner ON job_lines (lease_owner) WHERE state = 'claimed';

CREATE TABLE translation_memory (
    signature  TEXT NOT NULL,
    source     TEXT NOT NULL,                  -- normalised source sentence
    target     TEXT NOT NULL,
    hits       INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_used  REAL NOT NULL,
    PRIMARY KEY (signature, source)
);
CREATE INDEX translation_memory_lru ON translation_memory (last_used);
