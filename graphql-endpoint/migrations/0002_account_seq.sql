
-- The bank's per-account sequence of a balance change (BalanceChanged.seq; 0 for events from before it existed):
-- the projected balance only moves to a change with a higher one, whatever order the events arrive in.
ALTER TABLE gateway.transactions ADD COLUMN account_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gateway.accounts ADD COLUMN balance_seq BIGINT NOT NULL DEFAULT 0;
