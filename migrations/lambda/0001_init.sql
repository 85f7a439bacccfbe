-- lambda_service_db, first schema: functions and versions, invocations (the audit log),
-- schedules, accepted-event audit, dead-letter queue, build-webhook idempotency and
-- on_success/on_failure destination deliveries.
-- Applied by ml-migrate inside one transaction (no transaction control here).
-- Deleting a function deletes everything below it (ON DELETE CASCADE) except event_audit,
-- which is an audit trail and outlives the function.

CREATE FUNCTION ml_set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- id is the id the build-master gave the function.
CREATE TABLE functions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL UNIQUE
                    CONSTRAINT functions_name_format CHECK (name ~ '^[A-Za-z0-9_-]{1,64}$')
                    -- {fn} in a path is an id or a name: a name must never look like an id
                    CONSTRAINT functions_name_not_uuid CHECK (name !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
    runtime         text NOT NULL CHECK (runtime IN ('python3', 'nodejs', 'provided')),
    handler         text NOT NULL CHECK (length(handler) BETWEEN 1 AND 128),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active', 'failed')),
    state_reason    text,
    -- FK to function_versions added below; NULL until the first build completes
    active_version  integer,
    -- counter handing out version numbers (UPDATE ... SET last_version = last_version + 1)
    last_version    integer NOT NULL DEFAULT 0 CHECK (last_version >= 0),
    memory_mb       integer NOT NULL DEFAULT 128 CHECK (memory_mb BETWEEN 64 AND 4096),
    timeout_s       integer NOT NULL DEFAULT 30 CHECK (timeout_s BETWEEN 1 AND 900),
    env             jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(env) = 'object'),
    -- {"rps": N > 0, "burst": N >= 1 (optional)}; NULL = not limited per function
    rate_limit      jsonb CHECK (rate_limit IS NULL OR (
                        jsonb_typeof(rate_limit) = 'object'
                        AND CASE WHEN jsonb_typeof(rate_limit -> 'rps') = 'number'
                                 THEN (rate_limit ->> 'rps')::numeric > 0 ELSE false END
                        AND CASE WHEN NOT rate_limit ? 'burst' THEN true
                                 WHEN jsonb_typeof(rate_limit -> 'burst') = 'number'
                                 THEN (rate_limit ->> 'burst')::numeric >= 1 ELSE false END)),
    -- most instances running this function at once; NULL = no per-function cap
    concurrency     integer CHECK (concurrency BETWEEN 1 AND 1000),
    max_retries     integer NOT NULL DEFAULT 2 CHECK (max_retries BETWEEN 0 AND 2),
    -- async events older than this go to the DLQ instead of another attempt (AWS: 60 s–6 h)
    max_event_age_s integer NOT NULL DEFAULT 21600 CHECK (max_event_age_s BETWEEN 60 AND 21600),
    on_success_url  text CHECK (on_success_url ~ '^https?://' AND length(on_success_url) <= 2048),
    on_failure_url  text CHECK (on_failure_url ~ '^https?://' AND length(on_failure_url) <= 2048),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT functions_active_has_version CHECK (state <> 'active' OR active_version IS NOT NULL)
);
CREATE INDEX functions_list ON functions (created_at, id);
CREATE TRIGGER functions_updated_at BEFORE UPDATE ON functions
    FOR EACH ROW EXECUTE FUNCTION ml_set_updated_at();

CREATE TABLE function_versions (
    function_id     uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    -- one version per completed build: a redelivered "completed" webhook inserts nothing
    build_id        uuid NOT NULL UNIQUE,
    runtime         text NOT NULL CHECK (runtime IN ('python3', 'nodejs', 'provided')),
    handler         text NOT NULL CHECK (length(handler) BETWEEN 1 AND 128),
    artifact_prefix text NOT NULL,
    artifact_sha256 text NOT NULL CHECK (artifact_sha256 ~ '^[0-9a-f]{64}$'),
    artifact_size   bigint NOT NULL CHECK (artifact_size BETWEEN 0 AND 262144000),
    artifact_files  integer NOT NULL CHECK (artifact_files BETWEEN 0 AND 10000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (function_id, version)
);
ALTER TABLE functions ADD CONSTRAINT functions_active_version_fkey
    FOREIGN KEY (id, active_version) REFERENCES function_versions (function_id, version);

-- The lambda side's view of each build, fed only by build-status webhooks; status only
-- moves forward (queued < building < completed|failed), so late or repeated webhooks are harmless.
CREATE TABLE function_builds (
    build_id    uuid PRIMARY KEY,
    function_id uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    status      text NOT NULL CHECK (status IN ('queued', 'building', 'completed', 'failed')),
    error       text,
    -- the build-master's timestamp of the first webhook seen, to tell the newest build
    queued_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX function_builds_newest ON function_builds (function_id, queued_at DESC);
CREATE TRIGGER function_builds_updated_at BEFORE UPDATE ON function_builds
    FOR EACH ROW EXECUTE FUNCTION ml_set_updated_at();

-- POST /webhooks/build-status/{build_id} idempotency: a webhook-id is processed once.
CREATE TABLE build_webhook_receipts (
    webhook_id  text PRIMARY KEY CHECK (length(webhook_id) BETWEEN 1 AND 128),
    build_id    uuid NOT NULL,
    function_id uuid,
    status      text NOT NULL CHECK (status IN ('queued', 'building', 'completed', 'failed')),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX build_webhook_receipts_build ON build_webhook_receipts (build_id);

CREATE TABLE schedules (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    function_id   uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    -- 5-field cron, UTC; parsed by the service, shape checked here
    cron          text NOT NULL CHECK (length(cron) <= 256
                      AND array_length(regexp_split_to_array(btrim(cron), '\s+'), 1) = 5),
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (octet_length(payload::text) <= 262144),
    enabled       boolean NOT NULL DEFAULT true,
    -- claimed with FOR UPDATE SKIP LOCKED and advanced in the same transaction that creates
    -- the invocation, so a fire happens once even with several executors
    next_fire_at  timestamptz,
    last_fired_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT enabled OR next_fire_at IS NOT NULL)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled;
CREATE INDEX schedules_function ON schedules (function_id, created_at);
CREATE TRIGGER schedules_updated_at BEFORE UPDATE ON schedules
    FOR EACH ROW EXECUTE FUNCTION ml_set_updated_at();

-- One row per invocation: the audit log behind GET /invocations/{id} and
-- GET /functions/{fn}/invocations, and the durable record of queued async events.
CREATE TABLE invocations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    function_id     uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    -- NULL while an async event waits (the version is resolved when it runs)
    version         integer CHECK (version >= 1),
    trigger         text NOT NULL CHECK (trigger IN ('http_sync', 'http_async', 'cron', 'dlq_replay')),
    -- queued: waiting (also between async retries); running: an executor holds it;
    -- the rest are final
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'timed_out',
                                      'dead_lettered')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    cold_start      boolean,
    request_id      text CHECK (length(request_id) <= 128),
    payload_size    integer NOT NULL DEFAULT 0 CHECK (payload_size BETWEEN 0 AND 6291456),
    -- the event, stored for async/cron/replay (≤ 256 KiB there); raw bytes
    payload         bytea CHECK (octet_length(payload) <= 6291456),
    -- the handler's return value (async: shown by GET /invocations/{id})
    result          bytea CHECK (octet_length(result) <= 6291456),
    -- 'Unhandled', 'TimeoutError', 'Runtime.ExitError', 'Runtime.OutOfMemory', ...
    error_type      text CHECK (length(error_type) <= 128),
    error_message   text,
    -- last 4 KiB of output, raw bytes (function output need not be UTF-8)
    log_tail        bytea CHECK (octet_length(log_tail) <= 4096),
    duration_ms     integer CHECK (duration_ms >= 0),
    memory_used_mb  integer CHECK (memory_used_mb >= 0),
    executor_id     text,
    -- while running: past this the executor is presumed dead and the event may be taken again
    lease_until     timestamptz,
    -- async retry backoff: when the next attempt is due
    next_attempt_at timestamptz,
    replay_of       uuid REFERENCES invocations (id) ON DELETE SET NULL,
    schedule_id     uuid REFERENCES schedules (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    CHECK (status IN ('queued', 'running') OR finished_at IS NOT NULL),
    CHECK (status <> 'running' OR started_at IS NOT NULL)
);
CREATE INDEX invocations_function_newest ON invocations (function_id, created_at DESC, id DESC);
CREATE INDEX invocations_function_status ON invocations (function_id, status, created_at DESC, id DESC);
-- recovery sweeps: events waiting for a retry, and runs whose executor died
CREATE INDEX invocations_waiting ON invocations (next_attempt_at) WHERE status = 'queued';
CREATE INDEX invocations_running ON invocations (lease_until) WHERE status = 'running';

-- Every accepted event (sync, async, cron, replay), without its body. Not tied to the
-- function row: the trail outlives a deleted function.
CREATE TABLE event_audit (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type           text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    function_id    uuid,
    function_name  text,
    subject        text,          -- the JWT sub of the caller, if any
    request_id     text,
    payload_size   integer NOT NULL DEFAULT 0 CHECK (payload_size >= 0),
    payload_sha256 text CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
    accepted_at    timestamptz NOT NULL DEFAULT now(),
    outcome        text,
    invocation_ids uuid[] NOT NULL DEFAULT '{}'
);
CREATE INDEX event_audit_function ON event_audit (function_id, accepted_at DESC);

-- Async events that used up their retries (or their max age). Also published to the
-- RabbitMQ dead-letter queue; this row is what GET /functions/{fn}/dlq lists.
CREATE TABLE dead_letter_queue (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invocation_id          uuid NOT NULL UNIQUE REFERENCES invocations (id) ON DELETE CASCADE,
    function_id            uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    event                  bytea NOT NULL CHECK (octet_length(event) <= 262144),
    error_type             text,
    error_message          text,
    attempts               integer NOT NULL CHECK (attempts >= 0),
    first_attempt_at       timestamptz,
    last_attempt_at        timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    replayed_at            timestamptz,
    replayed_invocation_id uuid REFERENCES invocations (id) ON DELETE SET NULL
);
CREATE INDEX dead_letter_queue_function ON dead_letter_queue (function_id, created_at DESC, id DESC);

-- on_success_url / on_failure_url deliveries: durable and retried like build webhooks.
-- id is the webhook-id (same across retries); payload is the exact body sent.
CREATE TABLE destination_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invocation_id    uuid NOT NULL REFERENCES invocations (id) ON DELETE CASCADE,
    function_id      uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('on_success', 'on_failure')),
    url              text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    payload          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    worker_id        text,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (invocation_id, kind),
    CHECK (status <> 'delivered' OR delivered_at IS NOT NULL)
);
CREATE INDEX destination_deliveries_due ON destination_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE TRIGGER destination_deliveries_updated_at BEFORE UPDATE ON destination_deliveries
    FOR EACH ROW EXECUTE FUNCTION ml_set_updated_at();

CREATE TABLE destination_attempts (
    delivery_id uuid NOT NULL REFERENCES destination_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    at          timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    duration_ms integer NOT NULL DEFAULT 0 CHECK (duration_ms >= 0),
    PRIMARY KEY (delivery_id, attempt)
);
