-- lock_dead_letters: stream entries the mirror could not apply, kept whole
-- instead of the ledger (issue 12, items 7 and 8). The mirror acknowledges
-- an entry only once it is in lock_events or here.

-- +goose Up
CREATE TABLE lock_dead_letters (
    -- the entry: its partition and id (the ledger's key), and its stream
    partition      integer     NOT NULL,
    stream_id      text COLLATE "C" NOT NULL,
    stream_key     text        NOT NULL,
    consumer_group text        NOT NULL,
    -- the entry's fields in their order, [[name, value], ...]: each name
    -- or value a JSON string when it is UTF-8 text without NUL, else
    -- {"hex": "<its bytes>"}; [] for an entry deleted before it was read
    fields         jsonb       NOT NULL,
    -- why it is here: "malformed: ...", "refused by Postgres: ...",
    -- "lost: ...", or "replay: ..." after a failed replay
    reason         text        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- set by a replay ("replayed") or by an operator who dismisses it
    resolved_at    timestamptz,
    resolution     text,
    CONSTRAINT lock_dead_letters_pkey PRIMARY KEY (partition, stream_id)
);
-- the open dead letters, which diagnostics counts
CREATE INDEX lock_dead_letters_open_idx ON lock_dead_letters (recorded_at) WHERE resolved_at IS NULL;

-- +goose Down
DROP TABLE lock_dead_letters;
