-- Outbox leases record their owner (see migrations/build/0002_outbox_lease_owner.sql): a
-- destination delivery held by a dead executor's dispatcher is taken over at once.
ALTER TABLE destination_deliveries ADD COLUMN lease_owner text;
