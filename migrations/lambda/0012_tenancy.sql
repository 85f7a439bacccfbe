-- Tenants (docs/tenants.md): namespaces with their quotas, and the per-namespace SigV4 access
-- keys, both owned by the lambda-executor's admin API (services/lambda-executor/tenancy.c,
-- accesskeys.c). A quota NULL means unlimited. A valid name with no row reads as the
-- executor's configured defaults ("created": false), so the table holds only what an admin set.
CREATE TABLE IF NOT EXISTS namespaces (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'), -- fnspec_ns_valid
    max_functions integer CHECK (max_functions > 0),
    max_concurrency integer CHECK (max_concurrency > 0),
    builds_per_minute integer CHECK (builds_per_minute > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO namespaces (name) VALUES ('default') ON CONFLICT (name) DO NOTHING;

-- SigV4 needs the secret itself to verify a signature (not a hash), so it is sealed with the
-- platform key (shared/secretbox, context "access_key:<access_key_id>": a sealed secret
-- cannot be moved to another key's row). No foreign key to namespaces: a key may name a
-- namespace that only has its defaults.
CREATE TABLE IF NOT EXISTS access_keys (
    access_key_id text PRIMARY KEY CHECK (access_key_id ~ '^AKML[A-Z2-7]{16}$'),
    namespace text NOT NULL CHECK (namespace ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    scopes text NOT NULL CHECK (scopes <> ''),
    description text NOT NULL DEFAULT '',
    secret_sealed text NOT NULL CHECK (secret_sealed LIKE 'enc:v1:%'),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz
);
CREATE INDEX IF NOT EXISTS access_keys_namespace ON access_keys (namespace, access_key_id);
