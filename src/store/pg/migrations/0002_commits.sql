-- memes ledger, schema version 2: every batch's commit id, so that a COMMIT whose reply was
-- lost (the connection broke, the primary failed over) can be looked up instead of answered
-- "unknown".
--
-- A batch inserts its own row in the same transaction as its entries: the row is there if and
-- only if the batch committed. To learn a batch's outcome, memesd (or an operator) inserts the
-- same id with `fenced` set: if that insert succeeds, the batch never committed and now never
-- can (its insert would conflict, and an insert still in progress is waited for first); if it
-- conflicts, the row says what happened. `moved` lists the users a batch decided on this
-- host's copy of their account and left for the next batch (nothing of theirs written).
--
-- Rows are small; delete old ones when the outcomes they hold are no longer asked about:
--   DELETE FROM commits WHERE at_ms < (extract(epoch FROM now() - interval '30 days') * 1000);

CREATE TABLE commits (
    id     text    PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    at_ms  bigint  NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    fenced boolean NOT NULL DEFAULT false,
    moved  text[]  NOT NULL DEFAULT '{}'
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memes_app') THEN
        GRANT SELECT, INSERT ON commits TO memes_app;
    END IF;
END
$$;
