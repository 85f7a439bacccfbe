-- Runtimes (issue 17, docs/versions.md "Runtimes"): the runtime CHECKs widened to the
-- accepted names (fnspec_runtime_valid). Which of them the platform can run is asked of the
-- lambda-executor at create time (GET /runtimes); the database refuses only names no daemon
-- would accept.
ALTER TABLE build_functions DROP CONSTRAINT IF EXISTS build_functions_runtime_check;
ALTER TABLE build_functions ADD CONSTRAINT build_functions_runtime_check CHECK (runtime IN (
    'python3', 'python3.9', 'python3.10', 'python3.11', 'python3.12', 'python3.13',
    'nodejs', 'nodejs18.x', 'nodejs20.x', 'nodejs22.x',
    'provided', 'provided.al2', 'provided.al2023'));
ALTER TABLE builds DROP CONSTRAINT IF EXISTS builds_runtime_check;
ALTER TABLE builds ADD CONSTRAINT builds_runtime_check CHECK (runtime IN (
    'python3', 'python3.9', 'python3.10', 'python3.11', 'python3.12', 'python3.13',
    'nodejs', 'nodejs18.x', 'nodejs20.x', 'nodejs22.x',
    'provided', 'provided.al2', 'provided.al2023'));
