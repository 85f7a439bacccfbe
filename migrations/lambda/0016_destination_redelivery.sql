-- Destination redeliveries (issue 18, docs/logs.md §4): POST
-- /invocations/{id}/deliveries/{delivery_id}/redeliver inserts a new row with the original's
-- kind, url and payload; only originals are unique per (invocation, kind).
ALTER TABLE destination_deliveries ADD COLUMN redelivery_of uuid
    REFERENCES destination_deliveries (id) ON DELETE CASCADE;
ALTER TABLE destination_deliveries DROP CONSTRAINT IF EXISTS destination_deliveries_invocation_id_kind_key;
CREATE UNIQUE INDEX destination_deliveries_original ON destination_deliveries (invocation_id, kind)
    WHERE redelivery_of IS NULL;
CREATE INDEX destination_deliveries_invocation ON destination_deliveries (invocation_id, created_at);
