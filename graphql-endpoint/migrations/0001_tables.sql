
CREATE TABLE gateway.users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('client', 'employee')),
    creation_id   UUID UNIQUE,
    iban          TEXT UNIQUE,
    account_token TEXT,
    account_error TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON COLUMN gateway.users.creation_id IS 'id of the ConfirmAccountCreation command that opens the account';
COMMENT ON COLUMN gateway.users.account_token IS 'authorises the account''s debits at the command-handler';

CREATE TABLE gateway.sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES gateway.users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expiry ON gateway.sessions (expires_at);

CREATE TABLE gateway.transfers (
    id              UUID PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES gateway.users (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    from_iban       TEXT NOT NULL,
    to_iban         TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    description     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED')),
    reason          TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at     TIMESTAMPTZ,
    UNIQUE (user_id, idempotency_key)
);

CREATE TABLE gateway.transactions (
    seq             BIGSERIAL PRIMARY KEY,
    transfer_id     UUID,
    iban            TEXT NOT NULL,
    new_balance     BIGINT NOT NULL,
    changed_by      BIGINT NOT NULL,
    from_to         TEXT NOT NULL,
    description     TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset    BIGINT NOT NULL
);
-- Redelivered events add nothing: one row per (transfer, account); events without a transfer id by position.
CREATE UNIQUE INDEX transactions_transfer ON gateway.transactions (transfer_id, iban) WHERE transfer_id IS NOT NULL;
CREATE UNIQUE INDEX transactions_position ON gateway.transactions (kafka_partition, kafka_offset) WHERE transfer_id IS NULL;
CREATE INDEX transactions_history ON gateway.transactions (iban, seq DESC);

CREATE TABLE gateway.accounts (
    iban       TEXT PRIMARY KEY,
    a_type     TEXT,
    balance    BIGINT NOT NULL DEFAULT 0,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE gateway.counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO gateway.counters (name, value) VALUES ('accounts', 0), ('transactions', 0), ('transfers', 0);
