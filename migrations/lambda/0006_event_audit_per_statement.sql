-- lambda_service_db: the event audit (0003) derived once per statement instead of once per
-- row. The audit writer merges its rows in batches of hundreds (COPY into a staging table,
-- one INSERT ... ON CONFLICT DO UPDATE); a plpgsql call and a single-row INSERT per row
-- were most of its cost. Transition tables give the same result with one set-based
-- statement per batch: an inserted invocation adds its event row, a changed status moves the
-- event's outcome. A trigger with transition tables serves one event and no column list, so
-- INSERT and UPDATE have one each; the UPDATE one compares old and new status itself.
-- Applied by ml-migrate inside one transaction (no transaction control here).

DROP TRIGGER invocations_event_audit ON invocations;
DROP FUNCTION ml_event_audit();

CREATE FUNCTION ml_event_audit_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_audit (id, type, function_id, function_name, request_id, payload_size,
                             payload_sha256, accepted_at, outcome, invocation_ids)
    SELECT n.id, n.trigger, n.function_id, f.name, n.request_id, n.payload_size,
           coalesce(n.payload_sha256, encode(sha256(n.payload), 'hex')), n.created_at, n.status,
           CASE WHEN n.replay_of IS NULL THEN ARRAY[n.id] ELSE ARRAY[n.id, n.replay_of] END
    FROM new_rows n JOIN functions f ON f.id = n.function_id
    ON CONFLICT (id) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION ml_event_audit_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE event_audit e SET outcome = n.status
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE e.id = n.id AND n.status IS DISTINCT FROM o.status;
    RETURN NULL;
END
$$;

CREATE TRIGGER invocations_event_audit_insert AFTER INSERT ON invocations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ml_event_audit_insert();
CREATE TRIGGER invocations_event_audit_update AFTER UPDATE ON invocations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION ml_event_audit_update();
