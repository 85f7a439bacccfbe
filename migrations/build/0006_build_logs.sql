-- Build logs and redeliveries (issue 18, docs/logs.md §3–4).
--
-- build_log_lines: what the build-worker did, one row per line, written as each step happens
-- so a reader sees the build live. seq numbers a build's lines from 1 across attempts (a
-- takeover continues the sequence). At most 10,000 lines / 1 MiB of messages per build
-- (the worker's bound; the last line says so).
CREATE TABLE build_log_lines (
    build_id uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    seq      integer NOT NULL CHECK (seq >= 1),
    ts       timestamptz NOT NULL DEFAULT clock_timestamp(),
    level    text NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    step     text NOT NULL CHECK (step IN ('claim', 'download', 'extract', 'check', 'install',
                                           'upload', 'record', 'done')),
    message  text NOT NULL CHECK (length(message) <= 4096),
    PRIMARY KEY (build_id, seq)
);

-- A redelivery (POST /builds/{id}/deliveries/{delivery_id}/redeliver) is a new row with the
-- original's event, url and payload; only originals are unique per (build, target, event).
ALTER TABLE webhook_deliveries ADD COLUMN redelivery_of uuid
    REFERENCES webhook_deliveries (id) ON DELETE CASCADE;
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_build_id_target_event_status_key;
CREATE UNIQUE INDEX webhook_deliveries_original ON webhook_deliveries (build_id, target, event_status)
    WHERE redelivery_of IS NULL;
