-- build_service_db, first schema: functions as the build side knows them, builds, their
-- status history and file manifests, and durable signed webhook deliveries.
-- Applied by ml-migrate inside one transaction (no transaction control here).

CREATE FUNCTION ml_set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- The build-master owns function names (409 on a duplicate) and the user's webhook settings.
-- The id is the function's id on both sides; the lambda side learns it from webhooks.
CREATE TABLE build_functions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text NOT NULL
                   CONSTRAINT build_functions_name_format CHECK (name ~ '^[A-Za-z0-9_-]{1,64}$')
                   -- {fn} in a path is an id or a name: a name must never look like an id
                   CONSTRAINT build_functions_name_not_uuid CHECK (name !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
    runtime        text NOT NULL CHECK (runtime IN ('python3', 'nodejs', 'provided')),
    handler        text NOT NULL CHECK (length(handler) BETWEEN 1 AND 128),
    webhook_url    text CHECK (webhook_url ~ '^https?://' AND length(webhook_url) <= 2048),
    webhook_secret text NOT NULL CHECK (webhook_secret LIKE 'whsec\_%'),
    -- memory_mb, timeout_s, env, rate_limit, concurrency as given at creation, handed on
    -- to the lambda side; validated there and by the API.
    config         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(config) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- set when the function is deleted, which frees its name
    deleted_at     timestamptz
);
CREATE UNIQUE INDEX build_functions_name_live ON build_functions (name) WHERE deleted_at IS NULL;
CREATE TRIGGER build_functions_updated_at BEFORE UPDATE ON build_functions
    FOR EACH ROW EXECUTE FUNCTION ml_set_updated_at();

CREATE TABLE builds (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    function_id     uuid NOT NULL REFERENCES build_functions (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'building', 'completed', 'failed')),
    error           text,
    -- what is built (a later PUT may change the function's handler; the build keeps its own)
    runtime         text NOT NULL CHECK (runtime IN ('python3', 'nodejs', 'provided')),
    handler         text NOT NULL CHECK (length(handler) BETWEEN 1 AND 128),
    -- the uploaded ZIP in S3
    package_key     text NOT NULL,
    package_size    bigint NOT NULL CHECK (package_size BETWEEN 0 AND 52428800),
    package_sha256  text NOT NULL CHECK (package_sha256 ~ '^[0-9a-f]{64}$'),
    -- the extracted artifact in S3 (set on completion)
    artifact_prefix text,
    artifact_sha256 text CHECK (artifact_sha256 ~ '^[0-9a-f]{64}$'),
    artifact_size   bigint CHECK (artifact_size BETWEEN 0 AND 262144000),
    artifact_files  integer CHECK (artifact_files BETWEEN 0 AND 10000),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    worker_id       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    -- outbox: set once the broker confirmed the build job; NULL + queued = publish again
    published_at    timestamptz,
    -- a queued build may fail without starting (e.g. its job could not be published)
    CHECK (status NOT IN ('building', 'completed') OR started_at IS NOT NULL),
    CHECK (status NOT IN ('completed', 'failed') OR finished_at IS NOT NULL),
    CHECK (status <> 'failed' OR error IS NOT NULL),
    CHECK (status <> 'completed' OR (artifact_prefix IS NOT NULL AND artifact_sha256 IS NOT NULL
                                     AND artifact_size IS NOT NULL AND artifact_files IS NOT NULL))
);
CREATE INDEX builds_function_newest ON builds (function_id, created_at DESC, id DESC);
CREATE INDEX builds_unpublished ON builds (created_at) WHERE status = 'queued' AND published_at IS NULL;
-- sweeping builds whose worker died mid-build
CREATE INDEX builds_in_progress ON builds (started_at) WHERE status = 'building';

-- Every status change, in order (id is monotonic).
CREATE TABLE build_status_events (
    id       bigserial PRIMARY KEY,
    build_id uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    status   text NOT NULL CHECK (status IN ('queued', 'building', 'completed', 'failed')),
    error    text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX build_status_events_build ON build_status_events (build_id, id);

-- Manifest of the extracted artifact (≤ 10,000 entries per build).
CREATE TABLE build_artifact_files (
    build_id uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    path     text NOT NULL CHECK (length(path) BETWEEN 1 AND 4096),
    size     bigint NOT NULL CHECK (size >= 0),
    sha256   text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    mode     integer NOT NULL DEFAULT 420 CHECK (mode BETWEEN 0 AND 4095), -- 0644
    PRIMARY KEY (build_id, path)
);

-- One row per (build, target, transition); its id is the Standard Webhooks webhook-id,
-- the same for every retry. target 'user' goes to the function's webhook_url (signed with
-- its webhook_secret); 'lambda' goes to the lambda-executor's /webhooks/build-status/{id}
-- (signed with the platform's internal secret). seq orders the transitions of one build so
-- a later one is not sent before an earlier one is settled.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    build_id         uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    function_id      uuid NOT NULL REFERENCES build_functions (id) ON DELETE CASCADE,
    target           text NOT NULL CHECK (target IN ('user', 'lambda')),
    event_status     text NOT NULL CHECK (event_status IN ('queued', 'building', 'completed', 'failed')),
    seq              smallint NOT NULL CHECK (seq BETWEEN 1 AND 3),
    url              text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    -- the exact body bytes that are signed; text, not jsonb, so retries send them unchanged
    payload          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- due time; a worker claiming the row pushes it forward as its lease
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    worker_id        text,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (build_id, target, event_status),
    CHECK (status <> 'delivered' OR delivered_at IS NOT NULL)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_build ON webhook_deliveries (build_id, target, seq);
CREATE TRIGGER webhook_deliveries_updated_at BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION ml_set_updated_at();

-- Every attempt, kept for inspection.
CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    at          timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    duration_ms integer NOT NULL DEFAULT 0 CHECK (duration_ms >= 0),
    PRIMARY KEY (delivery_id, attempt)
);
