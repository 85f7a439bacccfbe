-- Secrets at rest (docs/secrets.md). build_functions.config->'env' values are sealed by the
-- build-master ("enc:v1:<key id>:<base64 AES-256-GCM>", the key id beside each ciphertext) before
-- they are stored; rows from before this migration are sealed by the build-master's first start
-- with MINILAMBDA_SECRETS_KEY (the key is not in SQL, so this file cannot do it).
-- webhook_secret_sealed: the function's whsec_ secret sealed the same way, carried to the
-- lambda-executor in its build-status webhook copy (function.sealed) so destinations can be
-- signed with the function's own secret. NULL until sealed (new rows: at creation).
ALTER TABLE build_functions ADD COLUMN webhook_secret_sealed text
    CHECK (webhook_secret_sealed LIKE 'enc:v1:%');
