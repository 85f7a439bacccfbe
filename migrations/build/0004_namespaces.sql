-- Tenants (docs/tenants.md): every function belongs to one namespace, and names are unique per
-- namespace instead of globally. Rows from before namespaces land in 'default'. The CHECK is
-- fnspec_ns_valid's rule: a DNS label of 1..63 [a-z0-9-], not starting or ending with '-'.
ALTER TABLE build_functions ADD COLUMN namespace text NOT NULL DEFAULT 'default'
    CONSTRAINT build_functions_namespace_format
    CHECK (namespace ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$');
-- The live-name index, now per namespace; it also serves max_functions' count of a
-- namespace's live functions (namespace is its leading column).
DROP INDEX build_functions_name_live;
CREATE UNIQUE INDEX build_functions_name_live ON build_functions (namespace, name) WHERE deleted_at IS NULL;
