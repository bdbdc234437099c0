-- Glossaries (issue 27): per key, immutable once created (DeepL's model); `digest` names the entries' content
-- and goes into the translation signature and the memory key with the id.
CREATE TABLE glossaries (
    id TEXT PRIMARY KEY,
    owner TEXT,                      -- the key id; NULL with keys off
    name TEXT NOT NULL,
    source_lang TEXT NOT NULL,
    target_lang TEXT NOT NULL,
    entry_count INTEGER NOT NULL,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX glossaries_owner ON glossaries (owner);
CREATE TABLE glossary_entries (
    glossary_id TEXT NOT NULL REFERENCES glossaries (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (glossary_id, source)
);
