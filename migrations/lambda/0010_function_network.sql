-- Per-function network (docs/network.md): off unless PATCHed on; the executor gives a
-- network function its own namespace behind a NAT with the egress policy.
ALTER TABLE functions ADD COLUMN IF NOT EXISTS network boolean NOT NULL DEFAULT false;
