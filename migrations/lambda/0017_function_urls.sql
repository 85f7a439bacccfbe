-- Function URLs (docs/http.md, issue 20): one optional URL configuration per function —
-- auth mode, qualifier, CORS and per-route micro-batching — as the executor validated and
-- normalised it (fnurl_rules.c: defaults filled, so readers need no defaults of their own).
-- Hangs off the function (ON DELETE CASCADE): deleting the function removes its URL.
-- Applied by ml-migrate inside one transaction (no transaction control here).

CREATE TABLE function_urls (
    function_id uuid PRIMARY KEY REFERENCES functions (id) ON DELETE CASCADE,
    config      jsonb NOT NULL CHECK (jsonb_typeof(config) = 'object' AND config ? 'auth'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
