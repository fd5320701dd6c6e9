-- memes ledger, schema version 6: refunds (issue 26). A refund entry gives back (part of) a
-- charge, or a hold's capture: it names the entry it `reverses` and the tokens of it it
-- `refunded`; what went back, lot by lot, is its `lot_takes` rows (the last taken first),
-- and a lot emptied since the charge is re-opened as it was: `reopened_lots` keeps each such
-- lot's terms with the refund, since the `lots` row is gone and the lot carried over from
-- before lots (id 0) has no entry that records them. The rules are Rust's
-- (src/store/rules.rs); these tables keep their outcome, and the constraints are the second
-- line.
--
-- What a refund needs to re-open a lot as it was is read from what the ledger keeps already
-- (the `lots` row while the lot is held, else the credit that opened it; a capture's hold
-- parts; for lot 0, the balance its account's newest entry before lots records, which is
-- what rules::carried_over made of it): so a charge writes nothing more than before, and only
-- the refund, which may re-open a lot whose row is gone, keeps its terms.
--
-- Columns on `entries` rather than a side table: like a capture's `captured`, each is one
-- number that the audit, the export and history read with every entry, and a refund is
-- decided on the sum already refunded of its charge (read with the index below).
--
-- Applied in one transaction with its record in memes_schema, under the migration lock.

ALTER TABLE entries
    ADD COLUMN reverses bigint,
    ADD COLUMN refunded bigint CHECK (refunded > 0),
    DROP CONSTRAINT entries_kind_check,
    ADD CONSTRAINT entries_kind_check
        CHECK (kind IN ('welcome', 'charge', 'topup', 'deduct', 'entitle', 'expire',
                        'hold', 'capture', 'void', 'release', 'refund')),
    ADD CONSTRAINT entries_refund_check
        CHECK (CASE kind
                 WHEN 'refund' THEN delta >= 0 AND delta <= refunded AND reverses < seq
                 ELSE reverses IS NULL AND refunded IS NULL
               END);

-- What was refunded of a charge already: the refunds that name it.
CREATE INDEX entries_reverses ON entries (reverses) WHERE reverses IS NOT NULL;

-- The lots a refund re-opened, each as it was when the charge took from it (its terms and
-- its amount); what went back to it is the refund's `lot_takes` row for the lot.
CREATE TABLE reopened_lots (
    seq          bigint   NOT NULL,
    lot          bigint   NOT NULL CHECK (lot >= 0),
    amount       bigint   NOT NULL CHECK (amount > 0),
    effective_ms bigint   NOT NULL,
    expires_ms   bigint,
    priority     smallint NOT NULL CHECK (priority BETWEEN 0 AND 100),
    kind         text     NOT NULL CHECK (kind IN ('paid', 'promo')),
    PRIMARY KEY (seq, lot)
);
CREATE TRIGGER reopened_lots_append_only BEFORE UPDATE OR DELETE ON reopened_lots
    FOR EACH ROW EXECUTE FUNCTION entries_are_append_only();

-- The refund entries a batch wrote, by seq: a stored reply names its refund's seq, which is
-- drawn only as the batch writes, so a batch whose COMMIT reply was lost learns them here
-- (see 0002_commits.sql).
ALTER TABLE commits ADD COLUMN refunds bigint[] NOT NULL DEFAULT '{}';

-- A host from before refunds (schema version 5) that is still running may go on changing
-- balances: what it writes is still right (it only never refunds), so no trigger refuses it,
-- unlike holds (0004), whose expiries an older host would not release. Its reads of a refund
-- entry (history, the audit) fail, naming the unknown kind, until it is upgraded; a new one
-- refuses to start on this schema.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memes_app') THEN
        GRANT SELECT, INSERT ON reopened_lots TO memes_app;
    END IF;
END
$$;
