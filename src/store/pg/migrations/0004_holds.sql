-- memes ledger, schema version 4: holds (issue 26). A hold sets tokens of an account aside,
-- taken from its lots in burn order as a debit's are (its `lot_takes` rows, under its entry's
-- seq), and ends once: captured, voided, or expired at `expires_ms` (a 'release' entry,
-- written with the account's next change, dated `at_ms`). What goes back returns to the lots
-- it came from, re-opened as they were if they were emptied meanwhile: `hold_parts` keeps
-- each such lot's terms with what the hold took of it. The rules are Rust's
-- (src/store/rules.rs); these tables keep their outcome, and the constraints are the second
-- line.
--
-- Applied in one transaction with its record in memes_schema, under the migration lock.

-- A hold's id is drawn from its own sequence before the batch decides, because the reply
-- stored with an idempotency key names it, and an entry's seq is only known at its insert.
CREATE SEQUENCE hold_ids;

CREATE TABLE holds (
    id         bigint PRIMARY KEY CHECK (id > 0),
    user_id    text   NOT NULL REFERENCES accounts (user_id),
    -- The entry that made it (its takes are this entry's `lot_takes`).
    seq        bigint NOT NULL UNIQUE,
    amount     bigint NOT NULL CHECK (amount > 0),
    captured   bigint NOT NULL DEFAULT 0 CHECK (captured BETWEEN 0 AND amount),
    created_ms bigint NOT NULL,
    expires_ms bigint NOT NULL CHECK (expires_ms > created_ms),
    state      text   NOT NULL CHECK (state IN ('open', 'captured', 'voided', 'expired')),
    -- The entry that ended it (a capture, a void or a release); NULL while open.
    ended_seq  bigint UNIQUE,
    CHECK ((state = 'open') = (ended_seq IS NULL)),
    CHECK (state = 'captured' OR captured = 0),
    CHECK (state <> 'captured' OR captured > 0)
);
-- What a change reads with the account it locks: its open holds.
CREATE INDEX holds_open ON holds (user_id) WHERE state = 'open';

-- What a hold took from each lot, with the lot as it was (its terms, and its amount), so that
-- what goes back re-opens a lot emptied since exactly as it was: in burn order (`ord`).
CREATE TABLE hold_parts (
    hold_id      bigint   NOT NULL REFERENCES holds (id),
    ord          int      NOT NULL CHECK (ord > 0),
    lot          bigint   NOT NULL CHECK (lot >= 0),
    tokens       bigint   NOT NULL CHECK (tokens > 0),
    amount       bigint   NOT NULL CHECK (amount >= tokens),
    effective_ms bigint   NOT NULL,
    expires_ms   bigint,
    priority     smallint NOT NULL CHECK (priority BETWEEN 0 AND 100),
    kind         text     NOT NULL CHECK (kind IN ('paid', 'promo')),
    PRIMARY KEY (hold_id, ord)
);

-- A hold's entries name it (`hold_id`); a capture says what it spent (`captured`).
ALTER TABLE entries
    ADD COLUMN hold_id  bigint,
    ADD COLUMN captured bigint CHECK (captured > 0),
    DROP CONSTRAINT entries_kind_check,
    ADD CONSTRAINT entries_kind_check
        CHECK (kind IN ('welcome', 'charge', 'topup', 'deduct', 'entitle', 'expire',
                        'hold', 'capture', 'void', 'release')),
    ADD CONSTRAINT entries_hold_check
        CHECK (CASE kind
                 WHEN 'hold'    THEN delta < 0 AND at_ms IS NOT NULL AND hold_id IS NOT NULL
                 WHEN 'capture' THEN delta >= 0 AND hold_id IS NOT NULL AND captured IS NOT NULL
                 WHEN 'void'    THEN delta >= 0 AND hold_id IS NOT NULL AND captured IS NULL
                 WHEN 'release' THEN delta >= 0 AND hold_id IS NOT NULL AND at_ms IS NOT NULL
                                     AND key IS NULL AND captured IS NULL
                 ELSE hold_id IS NULL AND captured IS NULL
               END);

-- A memesd from before holds would neither release an expired hold nor give back to its
-- lots: from now on every host says it knows holds (memesd sets `memes.schema` on each
-- connection it opens), and a balance changed by one that does not is refused.
CREATE FUNCTION accounts_change_with_holds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'this ledger keeps holds (schema version 4): a balance changed by a memesd from before holds is refused; upgrade every host';
END
$$;
CREATE TRIGGER accounts_update_with_holds BEFORE UPDATE ON accounts
    FOR EACH ROW WHEN (NEW.balance IS DISTINCT FROM OLD.balance
                       AND coalesce(nullif(current_setting('memes.schema', true), ''), '0')::int < 4)
    EXECUTE FUNCTION accounts_change_with_holds();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memes_app') THEN
        GRANT SELECT, INSERT, UPDATE ON holds TO memes_app;
        GRANT SELECT, INSERT ON hold_parts TO memes_app;
        GRANT USAGE ON SEQUENCE hold_ids TO memes_app;
    END IF;
END
$$;
