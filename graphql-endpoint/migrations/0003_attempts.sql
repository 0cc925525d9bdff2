-- Login and registration attempts per key ("<name> from <address>", "<name>", "from <address>", ...), shared by
-- every gateway instance: a fixed window per key, counted under the row's lock so a concurrent burst cannot pass
-- a limit. Rows whose window ended are deleted now and then.
CREATE TABLE gateway.attempts (
    key   TEXT PRIMARY KEY,
    count INT NOT NULL,
    since TIMESTAMPTZ NOT NULL
);
CREATE INDEX attempts_since ON gateway.attempts (since);
