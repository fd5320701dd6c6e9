-- memes ledger, schema version 1.
--
-- The rules of the money are decided in Rust (src/store/rules.rs); these constraints are the
-- second line: the database refuses a wrong state even if the code were wrong.
--
-- Entries are append-only. The owner of these tables (the role that runs the migrations) can
-- still change them, so a trigger refuses UPDATE and DELETE on entries for everyone, and a
-- role `memes_app`, if it exists when this migration runs, is granted exactly what memesd
-- needs: SELECT and INSERT on entries and idempotency_keys, SELECT/INSERT/UPDATE on accounts
-- (balances are a cache of the entries, checked by `memes audit`). To use it:
--
--   CREATE ROLE memes_app LOGIN PASSWORD '…';     -- before the first memesd starts, or:
--   GRANT SELECT, INSERT ON entries, idempotency_keys TO memes_app;
--   GRANT SELECT, INSERT, UPDATE ON accounts TO memes_app;
--   GRANT USAGE ON SEQUENCE entries_seq TO memes_app;
--   GRANT SELECT ON memes_schema TO memes_app;
--
-- and point memesd at the database as memes_app once the owner has migrated it.

CREATE SEQUENCE entries_seq AS bigint;

-- One row per user: the current balance and tier. Always equal to what the user's entries
-- add up to (`memes audit` checks).
CREATE TABLE accounts (
    user_id   text   PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 128),
    balance   bigint NOT NULL CHECK (balance >= 0) CHECK (balance <= 9007199254740991),
    tier      text   NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'premium')),
    until_ms  bigint
);

-- The ledger: one row per balance change, numbered by entries_seq. A request's own entry
-- carries its key, reason, memes and tier; a welcome grant written with it carries none.
CREATE TABLE entries (
    seq      bigint PRIMARY KEY DEFAULT nextval('entries_seq'),
    time_ms  bigint NOT NULL,
    user_id  text   NOT NULL REFERENCES accounts (user_id) DEFERRABLE INITIALLY IMMEDIATE,
    kind     text   NOT NULL CHECK (kind IN ('welcome', 'charge', 'topup', 'deduct', 'entitle')),
    delta    bigint NOT NULL,
    balance  bigint NOT NULL CHECK (balance >= 0) CHECK (balance <= 9007199254740991),
    key      text,
    reason   text,
    memes    text[] NOT NULL DEFAULT '{}',
    tier     text   CHECK (tier IN ('free', 'premium')),
    until_ms bigint,
    CHECK (CASE kind
             WHEN 'welcome' THEN delta >= 0
             WHEN 'topup'   THEN delta >= 0
             WHEN 'charge'  THEN delta <= 0
             WHEN 'deduct'  THEN delta < 0
             WHEN 'entitle' THEN delta = 0
           END),
    CHECK (kind <> 'welcome' OR (key IS NULL AND reason IS NULL AND tier IS NULL))
);
ALTER SEQUENCE entries_seq OWNED BY entries.seq;

-- The welcome grant, once per user ever.
CREATE UNIQUE INDEX entries_one_welcome ON entries (user_id) WHERE kind = 'welcome';
-- An idempotency key names one request, so one entry, ever (most entries have none).
CREATE UNIQUE INDEX entries_one_key ON entries (key) WHERE key IS NOT NULL;
-- A user's history, newest first, in pages.
CREATE INDEX entries_user_seq ON entries (user_id, seq);

-- What an idempotency key remembers: the request's canonical form and the reply it got
-- (stored as text, replayed byte for byte). The key also sits on its entry (unique there;
-- `memes audit` checks that each key has both).
CREATE TABLE idempotency_keys (
    key         text PRIMARY KEY,
    fingerprint text NOT NULL,
    reply       text NOT NULL
);

CREATE FUNCTION entries_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION entries_are_append_only();
CREATE TRIGGER idempotency_keys_append_only BEFORE UPDATE OR DELETE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION entries_are_append_only();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memes_app') THEN
        REVOKE ALL ON entries, idempotency_keys, accounts FROM memes_app;
        GRANT SELECT, INSERT ON entries, idempotency_keys TO memes_app;
        GRANT SELECT, INSERT, UPDATE ON accounts TO memes_app;
        GRANT USAGE ON SEQUENCE entries_seq TO memes_app;
        GRANT SELECT ON memes_schema TO memes_app;
    END IF;
END
$$;
