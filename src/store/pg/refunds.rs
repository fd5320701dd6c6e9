//! Refunds as PostgreSQL keeps them (schema version 6, `0006_refunds.sql`): the entry a
//! refund reverses read back as a [`Reversed`] (what it spent from which lot, each lot as it
//! was, and what was refunded of it already), and the lots refunds re-opened read back for
//! the replays (audit, export, the past view). The rule that decides a refund is
//! [`rules::decide_refund`]; the batch writer reads and writes for it, this module only
//! carries the rows.

use crate::domain::{EntryKind, Hold, HoldState, Lot};
use crate::store::rules::{self, Reversed};
use tokio_postgres::Row;

/// The entries `$1` (those a batch's refunds name, whatever their owner), each with the
/// tokens refunded of it so far and what it spent, one row per lot in the order taken
/// (columns as [`reversed_from`] reads them). Sent behind the batch's `LOCK`, so it reads
/// the refunds committed before the account's row lock was granted: two hosts refunding one
/// charge at once see each other's.
///
/// Each lot as it was when the entry took from it: a capture's from its hold's parts (which
/// keep it); a charge's from the `lots` row while the lot is held, else from the credit that
/// opened it (its seq is the lot's id, its delta the amount), else, for lot 0 (the balance
/// carried over from before lots, which no entry opened), from the balance of the account's
/// newest entry before lots ([`rules::carried_over`], as the file store and the audit read
/// it).
pub const REVERSED: &str =
    "SELECT e.seq, e.user_id, e.kind, e.delta, e.captured,
            (SELECT coalesce(sum(r.refunded), 0) FROM entries AS r WHERE r.reverses = e.seq)::bigint,
            p.lot, p.tokens, p.amount, p.effective_ms, p.expires_ms, p.priority, p.kind,
            c.delta, c.time_ms, c.lot_expires_ms, c.lot_priority, c.lot_kind, z.balance
     FROM entries AS e
     LEFT JOIN LATERAL (
         SELECT t.ord, t.lot, t.tokens,
                l.amount, l.effective_ms, l.expires_ms, l.priority, l.kind
         FROM lot_takes AS t
         LEFT JOIN lots AS l ON l.user_id = e.user_id AND l.id = t.lot
         WHERE t.seq = e.seq AND e.kind = 'charge'
         UNION ALL
         SELECT h.ord, h.lot, h.tokens, h.amount, h.effective_ms, h.expires_ms, h.priority, h.kind
         FROM hold_parts AS h
         WHERE h.hold_id = e.hold_id AND e.kind = 'capture'
     ) AS p ON true
     LEFT JOIN entries AS c
            ON p.amount IS NULL AND c.seq = p.lot AND c.user_id = e.user_id
               AND c.lot_kind IS NOT NULL
     LEFT JOIN LATERAL (
         SELECT b.balance FROM entries AS b
         WHERE p.amount IS NULL AND p.lot = 0 AND b.user_id = e.user_id AND b.seq < e.seq
           AND b.delta <> 0 AND b.lot_kind IS NULL AND b.hold_id IS NULL
           AND b.reverses IS NULL AND b.kind <> 'expire'
           AND NOT EXISTS (SELECT 1 FROM lot_takes AS x WHERE x.seq = b.seq)
         ORDER BY b.seq DESC LIMIT 1
     ) AS z ON true
     WHERE e.seq = ANY($1)
     ORDER BY e.seq, p.ord";

/// The entries read by [`REVERSED`], by seq; an error instead for an entry whose lot no row
/// describes (the ledger is damaged there, and only its refunds are refused: the audit says
/// where).
pub fn reversed_from(rows: &[Row]) -> Vec<(u64, Result<Reversed, String>)> {
    let mut found: Vec<(Reversed, Option<u64>, Option<String>)> = Vec::new();
    for row in rows {
        let seq = row.get::<_, i64>(0) as u64;
        if found.last().is_none_or(|(last, ..)| last.seq != seq) {
            let kind = super::kind_from(row.get(2));
            let captured = row.get::<_, Option<i64>>(4).map(|tokens| tokens as u64);
            let spent = match kind {
                Ok(EntryKind::Capture) => captured.unwrap_or(0),
                _ => row.get::<_, i64>(3).min(0).unsigned_abs(),
            };
            let reversed = Reversed {
                seq,
                user: row.get(1),
                kind: *kind.as_ref().unwrap_or(&EntryKind::Entitle),
                spent,
                parts: Vec::new(),
                refunded: row.get::<_, i64>(5) as u64,
            };
            found.push((reversed, captured, kind.err()));
        }
        let Some(lot) = row.get::<_, Option<i64>>(6).map(|lot| lot as u64) else {
            continue;
        };
        let tokens = row.get::<_, i64>(7) as u64;
        let was = if row.get::<_, Option<i64>>(8).is_some() {
            Some(super::columns::lot_from_at(row, lot, 8))
        } else if let Some(kind) = row.get::<_, Option<&str>>(17) {
            Some(Lot {
                id: lot,
                amount: row.get::<_, i64>(13).unsigned_abs(),
                remaining: 0,
                effective_at: row.get(14),
                expires_at: row.get(15),
                priority: row.get::<_, Option<i16>>(16).unwrap_or(0).clamp(0, 100) as u8,
                kind: super::columns::lot_kind_from(kind),
            })
        } else {
            row.get::<_, Option<i64>>(18)
                .and_then(|balance| rules::carried_over(balance.max(0) as u64))
                .filter(|_| lot == 0)
        };
        let (reversed, _, broken) = found.last_mut().expect("pushed above");
        match was {
            Some(was) => reversed.parts.push(Lot {
                remaining: tokens,
                ..was
            }),
            None => {
                *broken = Some(format!(
                    "entry {seq} took from lot {lot}, which no row of its account describes"
                ))
            }
        }
    }
    found
        .into_iter()
        .map(|(mut reversed, captured, broken)| {
            if let Some(broken) = broken {
                return (reversed.seq, Err(broken));
            }
            if reversed.kind == EntryKind::Capture {
                // A capture spent the first `captured` tokens of what its hold took.
                let hold = Hold {
                    id: 0,
                    amount: reversed.parts.iter().map(|part| part.remaining).sum(),
                    captured: captured.unwrap_or(0),
                    parts: std::mem::take(&mut reversed.parts),
                    created_at: 0,
                    expires_at: 0,
                    state: HoldState::Captured,
                };
                reversed.parts = rules::captured_parts(&hold);
            }
            (reversed.seq, Ok(reversed))
        })
        .collect()
}

/// The SQL of the three columns a replay reads a refund by (after the entry's other columns,
/// `e` being the entry): what it reverses, what it refunded, and the lots it re-opened as
/// [`reopened_from`] reads them, in the order it gave back to them.
pub const REPLAY_COLUMNS: &str = "e.reverses, e.refunded,
       (SELECT json_agg(json_build_array(o.lot, o.amount, o.effective_ms, o.expires_ms,
                                         o.priority, o.kind)
                        ORDER BY (SELECT t.ord FROM lot_takes AS t
                                  WHERE t.seq = o.seq AND t.lot = o.lot))::text
        FROM reopened_lots AS o WHERE o.seq = e.seq)";

/// The lots a refund re-opened, as [`REPLAY_COLUMNS`]' last column holds them (JSON, `NULL`
/// for none): `remaining` is left 0 (what came back is the refund's take).
pub fn reopened_from(json: Option<&str>) -> Result<Vec<Lot>, String> {
    type Row = (i64, i64, i64, Option<i64>, i16, String);
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let rows: Vec<Row> = serde_json::from_str(json)
        .map_err(|e| format!("the lots a refund re-opened, unreadable: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|(id, amount, effective, expires, priority, kind)| Lot {
            id: id as u64,
            amount: amount as u64,
            remaining: 0,
            effective_at: effective,
            expires_at: expires,
            priority: priority.clamp(0, 100) as u8,
            kind: super::columns::lot_kind_from(&kind),
        })
        .collect())
}
