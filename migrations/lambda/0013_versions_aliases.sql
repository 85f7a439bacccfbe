-- Published versions and aliases (docs/versions.md). A published version is an immutable
-- snapshot of $LATEST: a code revision (function_versions) plus the configuration it runs
-- with. An alias names a published version (NULL: $LATEST), optionally with one weighted
-- extra version. Both hang off the function (ON DELETE CASCADE) and so inherit its namespace.
-- Applied by ml-migrate inside one transaction (no transaction control here).

-- Version numbers per function, never reused (AWS: a deleted version's number stays gone).
CREATE TABLE published_version_counters (
    function_id uuid PRIMARY KEY REFERENCES functions (id) ON DELETE CASCADE,
    last_version integer NOT NULL CHECK (last_version >= 1)
);

-- No CHECK on runtime: the set of runtimes is operator config (docs/versions.md, Runtimes).
CREATE TABLE published_versions (
    function_id   uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    version       integer NOT NULL CHECK (version >= 1),
    code_revision integer NOT NULL,
    runtime       text NOT NULL CHECK (length(runtime) BETWEEN 1 AND 64),
    handler       text NOT NULL CHECK (length(handler) BETWEEN 1 AND 128),
    memory_mb     integer NOT NULL CHECK (memory_mb BETWEEN 64 AND 4096),
    timeout_s     integer NOT NULL CHECK (timeout_s BETWEEN 1 AND 900),
    -- as stored in functions.env: values sealed (docs/secrets.md)
    env           jsonb NOT NULL CHECK (jsonb_typeof(env) = 'object'),
    network       boolean NOT NULL DEFAULT false,
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 256),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (function_id, version),
    FOREIGN KEY (function_id, code_revision) REFERENCES function_versions (function_id, version)
        ON DELETE CASCADE
);

-- routing_version/routing_weight are the one extra version of a weighted alias (the API's
-- "routing": {"4": 0.1}, or {} when both are NULL): columns rather than a jsonb object so that
-- foreign keys can hold the versions. The foreign keys to published_versions
-- keep a version an alias routes to from being deleted (NO ACTION: checked at the end of the
-- statement, so deleting the function cascades over both tables without tripping it).
CREATE TABLE function_aliases (
    function_id    uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (name ~ '^[A-Za-z0-9_-]{1,128}$' AND name !~ '^[0-9]+$'),
    version        integer, -- NULL: $LATEST
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 256),
    routing_version integer,
    routing_weight double precision,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (function_id, name),
    FOREIGN KEY (function_id, version) REFERENCES published_versions (function_id, version),
    FOREIGN KEY (function_id, routing_version) REFERENCES published_versions (function_id, version),
    -- a split needs a published main version, another one, and a weight in [0, 1)
    CONSTRAINT function_aliases_routing CHECK (
        (routing_version IS NULL AND routing_weight IS NULL) OR
        (routing_version IS NOT NULL AND version IS NOT NULL AND routing_version <> version
         AND routing_weight >= 0 AND routing_weight < 1))
);
CREATE INDEX function_aliases_routing_version ON function_aliases (function_id, routing_version)
    WHERE routing_version IS NOT NULL;
CREATE TRIGGER function_aliases_updated_at BEFORE UPDATE ON function_aliases
    FOR EACH ROW EXECUTE FUNCTION ml_set_updated_at();

-- The audit row names what really ran: "$LATEST" or a published version number, and the
-- alias invoked through (NULL: none).
ALTER TABLE invocations ADD COLUMN executed_version text
    CHECK (executed_version IS NULL OR executed_version ~ '^(\$LATEST|[0-9]{1,10})$');
ALTER TABLE invocations ADD COLUMN alias text CHECK (alias IS NULL OR length(alias) <= 128);
