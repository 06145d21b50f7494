-- Shared and counted leases (issue 13): the locks mirror keeps one row
-- per (resource, owner) with the holder's mode, the resource's cap and
-- the holder's metadata, and the ledger records them with each event.
-- Existing rows are kept: they are exclusive leases (mode 'exclusive',
-- cap 0, no metadata), one per resource, which the new key admits as
-- they are. The ledger's new columns are NULL on the rows written before
-- this migration (and on every exclusive event: mode and cap are written
-- only for shared ones, meta only when given); adding nullable columns
-- without a default rewrites nothing.

-- +goose Up
ALTER TABLE locks
    ADD COLUMN mode text NOT NULL DEFAULT 'exclusive',
    ADD COLUMN cap integer NOT NULL DEFAULT 0,
    ADD COLUMN meta text,
    ADD CONSTRAINT locks_mode_check CHECK (mode IN ('exclusive', 'shared'));
ALTER TABLE locks DROP CONSTRAINT locks_pkey;
ALTER TABLE locks ADD CONSTRAINT locks_pkey PRIMARY KEY (resource_type, resource_id, owner_id);
ALTER TABLE lock_events
    ADD COLUMN mode text,
    ADD COLUMN cap integer,
    ADD COLUMN meta text;

-- +goose Down
ALTER TABLE lock_events DROP COLUMN meta, DROP COLUMN cap, DROP COLUMN mode;
-- one row per resource again: the holder with the greatest token stays
DELETE FROM locks l USING locks o
WHERE l.resource_type = o.resource_type AND l.resource_id = o.resource_id
  AND (l.token, l.owner_id) < (o.token, o.owner_id);
ALTER TABLE locks DROP CONSTRAINT locks_pkey;
ALTER TABLE locks ADD CONSTRAINT locks_pkey PRIMARY KEY (resource_type, resource_id);
ALTER TABLE locks DROP CONSTRAINT locks_mode_check, DROP COLUMN meta, DROP COLUMN cap, DROP COLUMN mode;
