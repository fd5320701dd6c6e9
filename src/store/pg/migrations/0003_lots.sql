-- memes ledger, schema version 3: lots (issue 26). What a balance is made of: every credit
-- opens a lot (amount, what remains, when it becomes spendable and expires, its priority and
-- kind), debits take from lots in the burn order, and a lot's remainder leaves the balance at
-- its expiry as an 'expire' entry. The rules are Rust's (src/store/rules.rs); these tables
-- keep their outcome, and the constraints are the second line.
--
-- Applied in one transaction with its record in memes_schema, under the migration lock, so
-- hosts starting together apply it once; ALTER TABLE holds accounts and entries while it
-- runs, so no change slips between the balances read here and the lots written.

-- A lot's id is the seq of the entry that opened it; 0 is the balance an account held
-- before lots (the migration rule, rules::carried_over: paid, never expiring).
CREATE TABLE lots (
    user_id      text     NOT NULL REFERENCES accounts (user_id),
    id           bigint   NOT NULL CHECK (id >= 0),
    amount       bigint   NOT NULL CHECK (amount > 0),
    remaining    bigint   NOT NULL CHECK (remaining > 0 AND remaining <= amount),
    effective_ms bigint   NOT NULL,
    expires_ms   bigint,
    priority     smallint NOT NULL CHECK (priority BETWEEN 0 AND 100),
    kind         text     NOT NULL CHECK (kind IN ('paid', 'promo')),
    PRIMARY KEY (user_id, id)
);

-- What each debit or expiry took, lot by lot, in burn order (`ord`): an entry's `from`.
CREATE TABLE lot_takes (
    seq    bigint  NOT NULL,
    ord    integer NOT NULL,
    lot    bigint  NOT NULL CHECK (lot >= 0),
    tokens bigint  NOT NULL CHECK (tokens > 0),
    PRIMARY KEY (seq, ord)
);
CREATE TRIGGER lot_takes_append_only BEFORE UPDATE OR DELETE ON lot_takes
    FOR EACH ROW EXECUTE FUNCTION entries_are_append_only();

-- A credit's lot terms (an entry's `lot`; NULL on entries written before lots) and an
-- expiry's date (`at`).
ALTER TABLE entries
    ADD COLUMN lot_expires_ms bigint,
    ADD COLUMN lot_priority   smallint CHECK (lot_priority BETWEEN 0 AND 100),
    ADD COLUMN lot_kind       text CHECK (lot_kind IN ('paid', 'promo')),
    ADD COLUMN at_ms          bigint,
    DROP CONSTRAINT entries_kind_check,
    ADD CONSTRAINT entries_kind_check
        CHECK (kind IN ('welcome', 'charge', 'topup', 'deduct', 'entitle', 'expire')),
    ADD CONSTRAINT entries_expire_check
        CHECK (kind <> 'expire' OR (delta < 0 AND at_ms IS NOT NULL AND key IS NULL));

-- Every change bumps its account's version: a host deciding on its copy of an account
-- updates it only if the version is still the copy's (a balance alone can come back to the
-- same number with different lots). Accounts opened from now on start at version 1; a
-- memesd from before lots never sets it, and the trigger below refuses its changes to a
-- balance, which would leave the lots behind.
ALTER TABLE accounts ADD COLUMN version bigint NOT NULL DEFAULT 0;

-- Each existing balance becomes one lot.
INSERT INTO lots (user_id, id, amount, remaining, effective_ms, expires_ms, priority, kind)
SELECT user_id, 0, balance, balance, 0, NULL, 50, 'paid' FROM accounts WHERE balance > 0;
UPDATE accounts SET version = 1;

CREATE FUNCTION accounts_change_with_lots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'this ledger keeps lots (schema version 3): a balance changed without its version, by a memesd from before lots, is refused; upgrade every host';
END
$$;
CREATE TRIGGER accounts_update_with_lots BEFORE UPDATE ON accounts
    FOR EACH ROW WHEN (NEW.balance IS DISTINCT FROM OLD.balance AND NEW.version = OLD.version)
    EXECUTE FUNCTION accounts_change_with_lots();
CREATE TRIGGER accounts_insert_with_lots BEFORE INSERT ON accounts
    FOR EACH ROW WHEN (NEW.version = 0)
    EXECUTE FUNCTION accounts_change_with_lots();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memes_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON lots TO memes_app;
        GRANT SELECT, INSERT ON lot_takes TO memes_app;
    END IF;
END
$$;
