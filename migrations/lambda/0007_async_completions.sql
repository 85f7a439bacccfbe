-- lambda_service_db: the durable completion record of async invocations (issue 15, item 5).
-- One row per invocation id, written by the consumer that runs it, synchronously and before
-- the broker message is acknowledged (never through the audit writer's queue):
--   started    an attempt is running (or was cut off by a crash: its executor died with the
--              row still 'started'; the next delivery runs it again as attempt + 1)
--   retrying   the attempt numbered `attempt` ended without completing; a retry is queued
--   completed  the function's execution completed (result_status says how); a redelivered
--              message for this id is acknowledged without running
-- Consumers serialise on a per-id advisory lock (pg_try_advisory_lock(1634957683, <id bits>))
-- held on their own connection for the whole attempt, so two never run one id at once and a
-- dead executor's lock goes with its connection. No foreign key: the record must outlive a
-- deleted function (a late redelivery must still be recognised). Applied by ml-migrate inside
-- one transaction.

CREATE TABLE async_completions (
    invocation_id  uuid PRIMARY KEY,
    function_id    uuid NOT NULL,
    state          text NOT NULL CHECK (state IN ('started', 'retrying', 'completed')),
    attempt        integer NOT NULL CHECK (attempt >= 0),
    -- completed only: succeeded, dead_lettered (its last attempt failed or it expired)
    result_status  text CHECK (result_status IN ('succeeded', 'failed', 'timed_out', 'dead_lettered')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'completed') = (completed_at IS NOT NULL AND result_status IS NOT NULL))
);

CREATE INDEX async_completions_started ON async_completions (updated_at) WHERE state <> 'completed';
