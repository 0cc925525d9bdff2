
-- Balance changes of the account so far; each balance_changed event carries the count after it (`seq`), so a
-- consumer that sees events out of order keeps the newest balance.
ALTER TABLE bank.accounts ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

DROP FUNCTION bank.apply_transfers(TEXT[], TEXT[], BIGINT[]);

-- As in migration 1, and each balance change also counts up the account's seq (returned with the balance).
CREATE FUNCTION bank.apply_transfers(froms TEXT[], tos TEXT[], amounts BIGINT[])
RETURNS TABLE (ord INT, ok BOOLEAN, code TEXT, from_balance BIGINT, to_balance BIGINT, from_seq BIGINT, to_seq BIGINT)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    i  INT;
    fb BIGINT;
    tb BIGINT;
    fs BIGINT;
    ts BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(amounts, 1), 0) LOOP
        fb := NULL;
        tb := NULL;
        fs := NULL;
        ts := NULL;
        IF froms[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance - amounts[i], seq = a.seq + 1
             WHERE a.iban = froms[i] AND a.balance - amounts[i] >= a.limit_cents
            RETURNING a.balance, a.seq INTO fb, fs;
            IF NOT FOUND THEN
                ord := i; ok := false; code := 'INSUFFICIENT_FUNDS'; from_balance := NULL; to_balance := NULL;
                from_seq := NULL; to_seq := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF tos[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance + amounts[i], seq = a.seq + 1
             WHERE a.iban = tos[i] AND a.balance <= 9223372036854775807 - amounts[i]
            RETURNING a.balance, a.seq INTO tb, ts;
            IF NOT FOUND THEN
                IF froms[i] <> 'cash' THEN
                    UPDATE bank.accounts a SET balance = a.balance + amounts[i], seq = a.seq - 1 WHERE a.iban = froms[i];
                END IF;
                ord := i; ok := false; code := 'BALANCE_OVERFLOW'; from_balance := NULL; to_balance := NULL;
                from_seq := NULL; to_seq := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        ord := i; ok := true; code := NULL; from_balance := fb; to_balance := tb; from_seq := fs; to_seq := ts;
        RETURN NEXT;
    END LOOP;
END
$fn$;
