
CREATE TABLE bank.accounts (
    iban            TEXT PRIMARY KEY,
    token           TEXT NOT NULL,
    balance         BIGINT NOT NULL,
    limit_cents     BIGINT NOT NULL,
    opening_balance BIGINT NOT NULL,
    a_type          TEXT NOT NULL CHECK (a_type IN ('AUTO', 'MANUAL')),
    created_by      UUID,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT balance_not_below_limit CHECK (balance >= limit_cents)
);

-- One row per command id: the outcome that a replay re-emits, and the ledger the audit checks.
CREATE TABLE bank.results (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('transfer', 'account')),
    confirmed        BOOLEAN NOT NULL,
    reason           TEXT,
    from_iban        TEXT,
    to_iban          TEXT,
    amount           BIGINT,
    from_balance     BIGINT,
    to_balance       BIGINT,
    iban             TEXT,
    source_topic     TEXT NOT NULL,
    source_partition INT NOT NULL,
    source_offset    BIGINT NOT NULL,
    handled_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Encoded events waiting to be published; deleted once Kafka acknowledged them.
CREATE TABLE bank.outbox (
    seq        BIGSERIAL PRIMARY KEY,
    topic      TEXT NOT NULL,
    key        BYTEA,
    payload    BYTEA,
    headers    TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Next offset to handle per source partition; the consumer seeks here on assignment.
CREATE TABLE bank.consumed_offsets (
    topic       TEXT NOT NULL,
    partition   INT NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Applies transfers in order. A debit happens only if the balance stays at or above the limit, a credit only
-- if it cannot overflow; both are single UPDATEs, so there is no read-modify-write race.
CREATE FUNCTION bank.apply_transfers(froms TEXT[], tos TEXT[], amounts BIGINT[])
RETURNS TABLE (ord INT, ok BOOLEAN, code TEXT, from_balance BIGINT, to_balance BIGINT)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    i  INT;
    fb BIGINT;
    tb BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(amounts, 1), 0) LOOP
        fb := NULL;
        tb := NULL;
        IF froms[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance - amounts[i]
             WHERE a.iban = froms[i] AND a.balance - amounts[i] >= a.limit_cents
            RETURNING a.balance INTO fb;
            IF NOT FOUND THEN
                ord := i; ok := false; code := 'INSUFFICIENT_FUNDS'; from_balance := NULL; to_balance := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF tos[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance + amounts[i]
             WHERE a.iban = tos[i] AND a.balance <= 9223372036854775807 - amounts[i]
            RETURNING a.balance INTO tb;
            IF NOT FOUND THEN
                IF froms[i] <> 'cash' THEN
                    UPDATE bank.accounts a SET balance = a.balance + amounts[i] WHERE a.iban = froms[i];
                END IF;
                ord := i; ok := false; code := 'BALANCE_OVERFLOW'; from_balance := NULL; to_balance := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        ord := i; ok := true; code := NULL; from_balance := fb; to_balance := tb;
        RETURN NEXT;
    END LOOP;
END
$fn$;
