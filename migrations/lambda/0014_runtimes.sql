-- Runtimes and function record additions (issue 17, docs/versions.md "Runtimes" and
-- "Function record additions").
--
-- The runtime CHECKs are widened to the accepted names (fnspec_runtime_valid), not dropped:
-- which of them this platform can run is the executor's runtimes table (a 400 at the API),
-- but the database still refuses a name no daemon would accept, as it always has.
ALTER TABLE functions DROP CONSTRAINT IF EXISTS functions_runtime_check;
ALTER TABLE functions ADD CONSTRAINT functions_runtime_check CHECK (runtime IN (
    'python3', 'python3.9', 'python3.10', 'python3.11', 'python3.12', 'python3.13',
    'nodejs', 'nodejs18.x', 'nodejs20.x', 'nodejs22.x',
    'provided', 'provided.al2', 'provided.al2023'));
ALTER TABLE function_versions DROP CONSTRAINT IF EXISTS function_versions_runtime_check;
ALTER TABLE function_versions ADD CONSTRAINT function_versions_runtime_check CHECK (runtime IN (
    'python3', 'python3.9', 'python3.10', 'python3.11', 'python3.12', 'python3.13',
    'nodejs', 'nodejs18.x', 'nodejs20.x', 'nodejs22.x',
    'provided', 'provided.al2', 'provided.al2023'));

-- description (<= 256 characters) and tags (<= 50 keys, key 1..128, value <= 256 characters:
-- the registry checks the shape, the database the object and its size).
ALTER TABLE functions ADD COLUMN IF NOT EXISTS description text NOT NULL DEFAULT ''
    CHECK (length(description) <= 256);
ALTER TABLE functions ADD COLUMN IF NOT EXISTS tags jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(tags) = 'object');
