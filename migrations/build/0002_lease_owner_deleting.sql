-- Outbox leases record their owner: lease_owner is the claiming dispatcher's worker_id while
-- it holds the row (cleared when the row is settled or released). The owner holds a
-- session-level advisory lock keyed by its worker_id for its connection's lifetime, so a
-- claimer can tell a dead owner's lease (lock free) from a live one's and take it at once.
ALTER TABLE webhook_deliveries ADD COLUMN lease_owner text;

-- A DELETE marks the function first (deleting_at), then deletes it on the lambda side, then
-- frees the name (deleted_at). A PUT of new code while the mark is fresh gets 409
-- function_deleting instead of queueing a build of a function about to vanish. A mark older
-- than the delete's own upper bound (320 s) is a build-master that died mid-delete: ignored.
ALTER TABLE build_functions ADD COLUMN deleting_at timestamptz;
