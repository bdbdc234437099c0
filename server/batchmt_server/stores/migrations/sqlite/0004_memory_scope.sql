-- The translation memory per scope and origin (issue 27).
-- scope: the API key id whose memory it is ('' with keys off: one shared memory). Before, a key's entries were
-- kept under its signature with '|tenant:<id>' appended; those rows move to their scope here.
-- origin: 'model' (a delivered, unflagged translation; bounded, least recently used first) or 'human' (imported
-- from TMX/TSV: kept under the signature '' so that it answers whatever model runs, wins over a model entry, and is
-- never evicted by the bound, which counts model entries only).
CREATE TABLE translation_memory_v4 (
    scope      TEXT NOT NULL DEFAULT '',
    signature  TEXT NOT NULL,
    source     TEXT NOT NULL,
    target     TEXT NOT NULL,
    origin     TEXT NOT NULL DEFAULT 'model' CHECK (origin IN ('model', 'human')),
    hits       INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_used  REAL NOT NULL,
    PRIMARY KEY (scope, signature, source)
);
INSERT INTO translation_memory_v4 (scope, signature, source, target, origin, hits, created_at, last_used)
SELECT
    CASE WHEN instr(signature, '|tenant:') > 0 THEN substr(signature, instr(signature, '|tenant:') + 8) ELSE '' END,
    CASE WHEN instr(signature, '|tenant:') > 0 THEN substr(signature, 1, instr(signature, '|tenant:') - 1)
         ELSE signature END,
    source, target, 'model', hits, created_at, last_used
FROM translation_memory;
DROP TABLE translation_memory;
ALTER TABLE translation_memory_v4 RENAME TO translation_memory;
CREATE INDEX translation_memory_lru ON translation_memory (origin, last_used);
CREATE INDEX translation_memory_source ON translation_memory (scope, source);
