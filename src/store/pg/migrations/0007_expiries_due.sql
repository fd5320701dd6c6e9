-- memes ledger, schema version 7: indexes by expiry alone, for memesd's expirer (which writes
-- each `expire` and `release` entry shortly after its instant, instead of with the account's
-- next change). It asks, every second or so, which accounts hold a lot or an open hold whose
-- `expires_ms` has passed (src/store/pg/mod.rs, `DUE`): with these, an index range as short
-- as what is due; without them, a scan of every lot that will ever expire (`lots_expiry`
-- leads with the account) and of every open hold, however few are due. Only indexes: the
-- tables and their rules are as schema version 6 left them.
--
-- Applied in one transaction with its record in memes_schema, under the migration lock.
-- Building the index on `lots` holds writes to it while it runs (seconds per million lots).

CREATE INDEX lots_due ON lots (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE INDEX holds_due ON holds (expires_ms) WHERE state = 'open';
