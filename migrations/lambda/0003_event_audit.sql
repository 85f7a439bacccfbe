-- Event audit: one row per trigger event (HTTP sync, HTTP async, cron fire, DLQ replay).
-- Every such event creates exactly one invocation, so the row is derived from the
-- invocation's own row by a trigger: written in the same transaction as the audit row,
-- never on the invocation's hot path, and always consistent with it. The event's id is the
-- invocation's id; a replay links the original invocation too; outcome follows the status.

ALTER TABLE invocations ADD COLUMN payload_sha256 text CHECK (payload_sha256 ~ '^[0-9a-f]{64}$');

CREATE FUNCTION ml_event_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event_audit (id, type, function_id, function_name, request_id, payload_size,
                                 payload_sha256, accepted_at, outcome, invocation_ids)
        SELECT NEW.id, NEW.trigger, NEW.function_id, f.name, NEW.request_id, NEW.payload_size,
               coalesce(NEW.payload_sha256, encode(sha256(NEW.payload), 'hex')), NEW.created_at,
               NEW.status,
               CASE WHEN NEW.replay_of IS NULL THEN ARRAY[NEW.id] ELSE ARRAY[NEW.id, NEW.replay_of] END
        FROM functions f WHERE f.id = NEW.function_id
        ON CONFLICT (id) DO NOTHING;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        UPDATE event_audit SET outcome = NEW.status WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER invocations_event_audit AFTER INSERT OR UPDATE OF status ON invocations
    FOR EACH ROW EXECUTE FUNCTION ml_event_audit();
