-- lambda_service_db: what the function registry and the audit writer need beyond 0001.
-- Applied by ml-migrate inside one transaction (no transaction control here).

-- A counter that moves on every change of a function's row (config, state, active version),
-- so a cached copy can tell whether it is older than another (see docs/executor-registry.md).
ALTER TABLE functions ADD COLUMN generation bigint NOT NULL DEFAULT 1 CHECK (generation >= 1);

CREATE FUNCTION ml_functions_bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.generation := OLD.generation + 1;
    RETURN NEW;
END
$$;
CREATE TRIGGER functions_generation BEFORE UPDATE ON functions
    FOR EACH ROW EXECUTE FUNCTION ml_functions_bump_generation();

-- Deleted functions, so a build-status webhook that arrives late (retried for hours by the
-- build side) cannot bring a deleted function back; the receiver answers 410 (stop retrying).
CREATE TABLE deleted_functions (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- Bytes of the result returned to the caller (payload_size is the request's).
ALTER TABLE invocations ADD COLUMN response_size integer CHECK (response_size >= 0);

-- Order of the records of one invocation: a stored row is replaced only by a record whose
-- phase is not lower. attempts counts attempts started; at equal attempts a record of the
-- running attempt comes before "queued for the next try" (written after that attempt
-- failed), which comes before a final state; dead_lettered is the last word.
CREATE FUNCTION ml_invocation_phase(status text, attempts integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT attempts::bigint * 4 + CASE status
        WHEN 'running' THEN 0
        WHEN 'queued' THEN 1
        WHEN 'dead_lettered' THEN 3
        ELSE 2 END
$$;

-- Deleting a function cascades to its invocations and schedules; every deleted invocation
-- or schedule row makes Postgres look up the rows pointing at it (ON DELETE SET NULL).
-- Without these indexes each lookup scans the whole invocations table, so deleting a
-- function with many invocations was quadratic.
CREATE INDEX invocations_replay_of ON invocations (replay_of) WHERE replay_of IS NOT NULL;
CREATE INDEX invocations_schedule ON invocations (schedule_id) WHERE schedule_id IS NOT NULL;
CREATE INDEX dead_letter_queue_replayed ON dead_letter_queue (replayed_invocation_id)
    WHERE replayed_invocation_id IS NOT NULL;
