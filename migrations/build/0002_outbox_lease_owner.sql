-- Outbox leases record their owner: lease_owner is the claiming dispatcher's worker_id while
-- it holds the row (cleared when the row is settled or released). The owner holds a
-- session-level advisory lock keyed by its worker_id for its connection's lifetime, so a
-- claimer can tell a dead owner's lease (lock free) from a live one's and take it at once.
ALTER TABLE webhook_deliveries ADD COLUMN lease_owner text;
