-- The operator who forced a lease off (issue 16, items 8 and 13): the
-- "by" field of a "forced" event (Coordinator.ForceRelease, lockctl
-- release --force --by). NULL for every other event, for a forced event
-- that named nobody, and for the rows written before this migration,
-- which are kept as they are. Adding a nullable column without a default
-- rewrites nothing: it is instant on a ledger of any size.

-- +goose Up
ALTER TABLE lock_events ADD COLUMN forced_by text;

-- +goose Down
ALTER TABLE lock_events DROP COLUMN forced_by;
