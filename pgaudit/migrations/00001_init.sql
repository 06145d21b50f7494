-- lockcoord audit schema: the locks mirror and the lock_events ledger.
-- Applied by pgaudit.Migrate (goose, under a Postgres advisory lock).

-- +goose Up
-- Names are compared byte by byte (COLLATE "C"): resource ids and owners
-- are opaque strings, and C comparisons keep the indexes cheap whatever
-- the database's collation.

-- locks: one row per resource held in Redis, as the mirror last saw it.
CREATE TABLE locks (
    resource_type  text COLLATE "C" NOT NULL,
    resource_id    text COLLATE "C" NOT NULL,
    owner_id       text COLLATE "C" NOT NULL,
    token          bigint      NOT NULL,
    hold_count     integer     NOT NULL,
    acquired_at    timestamptz NOT NULL,
    renewed_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    -- the stream entry id ("<ms>-<seq>") of the last event applied, and its
    -- two numbers, which order the events of one lease
    last_event_id  text        NOT NULL,
    last_event_ms  bigint      NOT NULL,
    last_event_seq bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT locks_pkey PRIMARY KEY (resource_type, resource_id)
);
CREATE INDEX locks_owner_id_idx ON locks (owner_id);
CREATE INDEX locks_expires_at_idx ON locks (expires_at);

-- lock_events: the append-only ledger, one row per stream entry (stream
-- entry ids are unique within a partition's stream, so the key is the
-- pair), plus one "expired" row per lease removed by cleanup.
CREATE TABLE lock_events (
    partition     integer     NOT NULL,
    stream_id     text COLLATE "C" NOT NULL,
    event         text        NOT NULL,
    resource_type text COLLATE "C" NOT NULL,
    resource_id   text COLLATE "C" NOT NULL,
    owner_id      text COLLATE "C" NOT NULL,
    token         bigint      NOT NULL,
    hold_count    integer     NOT NULL,
    at            timestamptz NOT NULL,
    acquired_at   timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    request_id    text        NOT NULL DEFAULT '',
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lock_events_pkey PRIMARY KEY (partition, stream_id),
    CONSTRAINT lock_events_event_check CHECK (event IN
        ('acquired', 'reentered', 'renewed', 'decremented', 'released', 'forced', 'expired'))
);
-- the history of a resource, and the mirror's check that no later lease
-- of a resource has already ended. (An index on owner_id is left to the
-- operator who needs one: each index slows the mirror down.)
CREATE INDEX lock_events_resource_idx ON lock_events (resource_type, resource_id, token);
-- time-range queries and retention on an append-only table
CREATE INDEX lock_events_at_brin ON lock_events USING brin (at);

-- +goose Down
DROP TABLE lock_events;
DROP TABLE locks;
