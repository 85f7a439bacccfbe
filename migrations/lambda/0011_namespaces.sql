-- Namespaces (docs/tenants.md): every function belongs to one; names are unique per
-- namespace, ids stay globally unique. Rows from before land in 'default'. Everything else
-- (versions, builds, invocations, schedules, DLQ, destinations) hangs off the function id and
-- so inherits the function's namespace; the tables that outlive a function and record its
-- name (deleted_functions, event_audit) record its namespace too.
-- Applied by ml-migrate inside one transaction (no transaction control here).

-- The CHECK is fnspec_ns_valid: a DNS label, 1-63 of [a-z0-9-], no '-' at either end.
ALTER TABLE functions ADD COLUMN namespace text NOT NULL DEFAULT 'default'
    CONSTRAINT functions_namespace_format CHECK (namespace ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$');
-- the name checks (functions_name_format, functions_name_not_uuid) stay; only uniqueness moves
ALTER TABLE functions DROP CONSTRAINT functions_name_key;
ALTER TABLE functions ADD CONSTRAINT functions_namespace_name_key UNIQUE (namespace, name);
-- GET /functions pages one namespace oldest first
CREATE INDEX functions_namespace_list ON functions (namespace, created_at, id);

ALTER TABLE deleted_functions ADD COLUMN namespace text NOT NULL DEFAULT 'default';

ALTER TABLE event_audit ADD COLUMN function_namespace text;
CREATE OR REPLACE FUNCTION ml_event_audit_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_audit (id, type, function_id, function_name, function_namespace, request_id,
                             payload_size, payload_sha256, accepted_at, outcome, invocation_ids)
    SELECT n.id, n.trigger, n.function_id, f.name, f.namespace, n.request_id, n.payload_size,
           coalesce(n.payload_sha256, encode(sha256(n.payload), 'hex')), n.created_at, n.status,
           CASE WHEN n.replay_of IS NULL THEN ARRAY[n.id] ELSE ARRAY[n.id, n.replay_of] END
    FROM new_rows n JOIN functions f ON f.id = n.function_id
    ON CONFLICT (id) DO NOTHING;
    RETURN NULL;
END
$$;
UPDATE event_audit SET function_namespace = 'default' WHERE function_namespace IS NULL;
