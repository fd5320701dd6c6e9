-- memes ledger, schema version 5: indexes that let a change read only the lots it may touch
-- (issue 26). Of an account with many lots, the batch writer reads those expired by the
-- batch's time and the first of the others in burn order (rules::burn_order) that cover
-- what its changes may take (src/store/pg/batch.rs, `LOTS`): each an index range, so that
-- a change costs the same whether the account holds ten lots or a hundred thousand. Only
-- indexes: the tables and their rules are as schema version 4 left them.
--
-- Applied in one transaction with its record in memes_schema, under the migration lock.
-- Building the indexes holds writes to `lots` while it runs (seconds per million lots).

-- The burn order, key by key, after the account.
CREATE INDEX lots_burn_order ON lots
    (user_id, priority, (expires_ms IS NULL), expires_ms, (kind <> 'promo'), effective_ms, id);
-- Lots that expire, by when.
CREATE INDEX lots_expiry ON lots (user_id, expires_ms) WHERE expires_ms IS NOT NULL;
