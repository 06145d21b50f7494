-- An index of the ledger rows that end a lease, for the mirror's check
-- that no later lease of a resource has ended (issue 12, item 9). The
-- check probes it once per upserted row, whatever the planner statistics
-- say, and skips the acquisitions and renewals of the resource.
-- CONCURRENTLY: building it on a large ledger does not block the mirror's
-- writes; it cannot run in a transaction.

-- +goose NO TRANSACTION
-- +goose Up
-- a build that failed half-way leaves an invalid index under the name
DROP INDEX CONCURRENTLY IF EXISTS lock_events_ended_idx;
CREATE INDEX CONCURRENTLY lock_events_ended_idx ON lock_events (resource_type, resource_id, token)
    WHERE event IN ('released', 'forced', 'expired');

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS lock_events_ended_idx;
