//! Holds as PostgreSQL keeps them (schema version 4, `0004_holds.sql`): the `holds` and
//! `hold_parts` rows read back into [`Hold`]s, and the rows written for holds opened or
//! ended, gathered column by column so that any number of them is one statement. The rules
//! that open and end holds are [`crate::store::rules`]'; this module only carries them.

use super::columns::lot_from;
use crate::domain::{Hold, HoldState};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Every open hold of the users `$1` and the holds `$2` (those a batch's captures and voids
/// name, whatever their state or owner), with their parts: one row per part, by hold then in
/// burn order; columns as [`holds_from`] reads them.
pub const HOLDS: &str =
    "SELECT h.user_id, h.id, h.amount, h.captured, h.created_ms, h.expires_ms, h.state,
            p.lot, p.amount, p.tokens, p.effective_ms, p.expires_ms, p.priority, p.kind
     FROM holds AS h JOIN hold_parts AS p ON p.hold_id = h.id
     WHERE (h.user_id = ANY($1) AND h.state = 'open') OR h.id = ANY($2)
     ORDER BY h.id, p.ord";

/// The holds read by [`HOLDS`] (its columns from `first` on, rows in its order), each with its
/// owner, in id order.
pub fn holds_from<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    first: usize,
) -> Vec<(String, Hold)> {
    let mut holds: Vec<(String, Hold)> = Vec::new();
    for row in rows {
        let column = |i: usize| first + i;
        let id = row.get::<_, i64>(column(1)) as u64;
        // A part's lot is read as a lot whose `remaining` is what the hold took of it.
        let part = lot_from(row, column(7));
        match holds.last_mut() {
            Some((_, hold)) if hold.id == id => hold.parts.push(part),
            _ => holds.push((
                row.get(column(0)),
                Hold {
                    id,
                    amount: row.get::<_, i64>(column(2)) as u64,
                    captured: row.get::<_, i64>(column(3)) as u64,
                    parts: vec![part],
                    created_at: row.get(column(4)),
                    expires_at: row.get(column(5)),
                    state: state_from(row.get(column(6))),
                },
            )),
        }
    }
    holds
}

/// A hold's state as the `state` column holds it (the schema allows only these four).
fn state_from(state: &str) -> HoldState {
    match state {
        "captured" => HoldState::Captured,
        "voided" => HoldState::Voided,
        "expired" => HoldState::Expired,
        _ => HoldState::Open,
    }
}

/// `holds` and `hold_parts` rows to write: holds opened (in their state after the write, so a
/// hold opened and ended by one write is inserted ended) and holds ended that were opened
/// before. Each names the entry that made or ended it by a number the statement maps to a
/// seq: the batch writer's row number among its entries, or, for the importer, the seq
/// itself.
#[derive(Default)]
pub struct HoldColumns {
    id: Vec<i64>,
    user: Vec<String>,
    entry: Vec<i64>,
    amount: Vec<i64>,
    captured: Vec<i64>,
    created: Vec<i64>,
    expires: Vec<i64>,
    state: Vec<&'static str>,
    ended_entry: Vec<Option<i64>>,
    part_hold: Vec<i64>,
    part_ord: Vec<i32>,
    part_lot: Vec<i64>,
    part_amount: Vec<i64>,
    part_tokens: Vec<i64>,
    part_effective: Vec<i64>,
    part_expires: Vec<Option<i64>>,
    part_priority: Vec<i16>,
    part_kind: Vec<&'static str>,
    end_id: Vec<i64>,
    end_state: Vec<&'static str>,
    end_captured: Vec<i64>,
    end_entry: Vec<i64>,
}

impl HoldColumns {
    /// A hold `user`'s entry `entry` opened, with its parts.
    pub fn opened(&mut self, user: &str, hold: &Hold, entry: i64) {
        self.id.push(hold.id as i64);
        self.user.push(user.to_string());
        self.entry.push(entry);
        self.amount.push(hold.amount as i64);
        self.captured.push(hold.captured as i64);
        self.created.push(hold.created_at);
        self.expires.push(hold.expires_at);
        self.state.push(hold.state.as_str());
        self.ended_entry.push(None);
        for (ord, part) in hold.parts.iter().enumerate() {
            self.part_hold.push(hold.id as i64);
            self.part_ord.push(ord as i32 + 1);
            self.part_lot.push(part.id as i64);
            self.part_amount.push(part.amount as i64);
            self.part_tokens.push(part.remaining as i64);
            self.part_effective.push(part.effective_at);
            self.part_expires.push(part.expires_at);
            self.part_priority.push(i16::from(part.priority));
            self.part_kind.push(part.kind.as_str());
        }
    }

    /// A hold entry `entry` ended, as it ended.
    pub fn ended(&mut self, hold: &Hold, entry: i64) {
        match self.id.iter().position(|id| *id == hold.id as i64) {
            Some(i) => {
                self.state[i] = hold.state.as_str();
                self.captured[i] = hold.captured as i64;
                self.ended_entry[i] = Some(entry);
            }
            None => {
                self.end_id.push(hold.id as i64);
                self.end_state.push(hold.state.as_str());
                self.end_captured.push(hold.captured as i64);
                self.end_entry.push(entry);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty() && self.end_id.is_empty()
    }

    /// How many parameters [`HoldColumns::params`] gives.
    pub const PARAMS: usize = 22;

    /// The columns as statement parameters, in the order [`write`] numbers them: nine of holds
    /// opened, nine of their parts, four of holds ended.
    pub fn params(&self) -> [&(dyn ToSql + Sync); Self::PARAMS] {
        [
            &self.id,
            &self.user,
            &self.entry,
            &self.amount,
            &self.captured,
            &self.created,
            &self.expires,
            &self.state,
            &self.ended_entry,
            &self.part_hold,
            &self.part_ord,
            &self.part_lot,
            &self.part_amount,
            &self.part_tokens,
            &self.part_effective,
            &self.part_expires,
            &self.part_priority,
            &self.part_kind,
            &self.end_id,
            &self.end_state,
            &self.end_captured,
            &self.end_entry,
        ]
    }
}

/// The data-modifying CTEs that write [`HoldColumns::params`] from parameter `$h` on:
/// `holds_opened`, `hold_parts_opened`, `holds_ended`. `seq(column)` is the SQL that turns an
/// entry number into its seq (`from` joins what it needs), and `lot(column)` a part's lot id
/// into the lot's (a lot opened by the same write has a provisional one).
pub fn write(h: usize, entry_seq: &Mapping, lot_id: &Mapping) -> String {
    let (parts, ended) = (h + 9, h + 18);
    format!(
        "holds_opened AS (
        INSERT INTO holds (id, user_id, seq, amount, captured, created_ms, expires_ms, state, ended_seq)
        SELECT x.id, x.u, {made}, x.a, x.c, x.cr, x.ex, x.st, {ended_seq}
        FROM unnest(${h}::bigint[], ${h1}::text[], ${h2}::bigint[], ${h3}::bigint[],
                    ${h4}::bigint[], ${h5}::bigint[], ${h6}::bigint[], ${h7}::text[],
                    ${h8}::bigint[]) AS x (id, u, n, a, c, cr, ex, st, en)
        {made_from} {ended_from}
    ), hold_parts_opened AS (
        INSERT INTO hold_parts (hold_id, ord, lot, tokens, amount, effective_ms, expires_ms,
                                priority, kind)
        SELECT y.h, y.o, {lot}, y.t, y.a, y.ef, y.ex, y.pr, y.k
        FROM unnest(${parts}::bigint[], ${p1}::int[], ${p2}::bigint[], ${p3}::bigint[],
                    ${p4}::bigint[], ${p5}::bigint[], ${p6}::bigint[], ${p7}::smallint[],
                    ${p8}::text[]) AS y (h, o, l, a, t, ef, ex, pr, k)
        {lot_from}
    ), holds_ended AS (
        UPDATE holds AS held SET state = w.st, captured = w.c, ended_seq = {end_seq}
        FROM unnest(${ended}::bigint[], ${e1}::text[], ${e2}::bigint[], ${e3}::bigint[])
             AS w (id, st, c, n)
        {end_from}
        WHERE held.id = w.id
    )",
        made = (entry_seq.value)("x.n", "made"),
        made_from = (entry_seq.join)("x.n", "made", false),
        ended_seq = (entry_seq.value)("x.en", "ended"),
        ended_from = (entry_seq.join)("x.en", "ended", true),
        lot = (lot_id.value)("y.l", "part_lot"),
        lot_from = (lot_id.join)("y.l", "part_lot", true),
        end_seq = (entry_seq.value)("w.n", "ending"),
        end_from = (entry_seq.join)("w.n", "ending", false),
        h1 = h + 1,
        h2 = h + 2,
        h3 = h + 3,
        h4 = h + 4,
        h5 = h + 5,
        h6 = h + 6,
        h7 = h + 7,
        h8 = h + 8,
        p1 = parts + 1,
        p2 = parts + 2,
        p3 = parts + 3,
        p4 = parts + 4,
        p5 = parts + 5,
        p6 = parts + 6,
        p7 = parts + 7,
        p8 = parts + 8,
        e1 = ended + 1,
        e2 = ended + 2,
        e3 = ended + 3,
    )
}

/// How a number in a column becomes what it stands for, in SQL: `value(column, alias)` is the
/// expression, `join(column, alias, optional)` what the `FROM` needs for it.
pub struct Mapping {
    pub value: fn(&str, &str) -> String,
    pub join: fn(&str, &str, bool) -> String,
}

/// The number is what it stands for (the importer knows every seq).
pub const AS_IS: Mapping = Mapping {
    value: |column, _| column.to_string(),
    join: |_, _, _| String::new(),
};
