-- Function logs (docs/logs.md §1 "Store"): every line a function writes to stdout/stderr and
-- the platform's START/END/REPORT lines, written by the executor's log writer (logq.c) with
-- COPY in batches. Partitioned by day (UTC) so retention is a DROP TABLE, not vacuum debt;
-- the writer creates today's and the next two days' partitions, the default partition
-- catches anything outside them. No foreign key to functions: logs outlive a deleted
-- function until their retention ends, and a key check per line would cost the COPY.
-- Applied by ml-migrate inside one transaction (no transaction control here).

CREATE SEQUENCE IF NOT EXISTS function_logs_id_seq AS bigint CACHE 100;

CREATE TABLE IF NOT EXISTS function_logs (
    id bigint NOT NULL DEFAULT nextval('function_logs_id_seq'),
    ts timestamptz NOT NULL,
    -- the writing transaction: follow reads below pg_snapshot_xmin so a late commit is not skipped
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    namespace text NOT NULL,
    function text NOT NULL,
    function_id uuid,
    version text NOT NULL DEFAULT '$LATEST',
    request_id uuid,
    stream smallint NOT NULL CHECK (stream BETWEEN 0 AND 2), -- 0 stdout, 1 stderr, 2 platform
    level text NOT NULL DEFAULT 'info',
    message text NOT NULL
) PARTITION BY RANGE (ts);
ALTER SEQUENCE function_logs_id_seq OWNED BY function_logs.id;

CREATE INDEX IF NOT EXISTS function_logs_fn_ts ON function_logs (namespace, function, ts, id);
CREATE INDEX IF NOT EXISTS function_logs_request ON function_logs (request_id, id);

CREATE TABLE IF NOT EXISTS function_logs_default PARTITION OF function_logs DEFAULT;

-- Creates the partition of day d (UTC) unless it exists: function_logs_pYYYYMMDD. Called by the
-- writer (ahead of time) and by maintenance; the name is built from a date, never user data.
CREATE OR REPLACE FUNCTION ml_function_logs_partition(d date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    part text := 'function_logs_p' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF function_logs'
                       ' FOR VALUES FROM (%L) TO (%L)', part,
                       (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN part;
END
$$;

SELECT ml_function_logs_partition((now() AT TIME ZONE 'UTC')::date + i) FROM generate_series(0, 2) AS i;

-- Per-namespace retention in days (NULL: MINILAMBDA_LOG_RETENTION_DAYS).
ALTER TABLE namespaces ADD COLUMN IF NOT EXISTS log_retention_days integer
    CHECK (log_retention_days BETWEEN 1 AND 365);
