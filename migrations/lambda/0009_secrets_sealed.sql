-- Secrets at rest (docs/secrets.md). functions.env values are stored sealed
-- ("enc:v1:<key id>:<base64 AES-256-GCM>", the key id beside each ciphertext) and opened only
-- for the sandbox; rows from before this migration are sealed at the lambda-executor's first
-- start with MINILAMBDA_SECRETS_KEY (the key is not in SQL, so this file cannot do it).
-- webhook_secret_sealed: the function's own whsec_ secret (the one POST /functions returned),
-- sealed the same way, from the build-status webhook; it signs the function's on_success /
-- on_failure deliveries. NULL (functions from before): the platform's secret signs them
-- until the function's next build-status webhook brings it.
ALTER TABLE functions ADD COLUMN webhook_secret_sealed text
    CHECK (webhook_secret_sealed LIKE 'enc:v1:%');
