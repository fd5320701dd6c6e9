//! The rules of the money, as pure functions: an account as it is, plus a requested change,
//! gives a decision (the entries to record and the account after) or a refusal.
//!
//! Every store calls these and nothing else decides: the file store before it encodes a
//! journal line, the PostgreSQL store before it writes rows (its constraints then check the
//! same rules a second time). No I/O, no clock, no state: each rule is tested here on its own.
//!
//! The rules:
//! - an account opens with the welcome grant, once ever, recorded in the same transaction as
//!   the change that opened it (a first `get`, a top-up, an entitlement); a deduction is
//!   never what opens an account (a refund or chargeback for an unknown user is an error);
//! - a balance never goes below zero nor above [`MAX_BALANCE`]: such a change is refused and
//!   nothing changes;
//! - a meme is charged only when delivered (the caller charges after it has the meme; the
//!   charge names what was delivered);
//! - an idempotency key names one request forever: the same request again replays the stored
//!   reply, another request with that key is a conflict;
//! - an idempotency key belongs to the caller that sent it ([`KeyOwner`]): another owner's
//!   key is never seen, never a conflict. Keys recorded before they were scoped still
//!   belong to the caller that recorded them ([`find_key`]).
//!
//! Lots (what a balance is made of; [`decide_lots`] on top of [`decide`]):
//! - every credit opens a lot: the welcome grant a promo lot (expiring after
//!   [`Welcome::expires_in`] if set), a top-up a lot on the terms it asks for ([`check_terms`]:
//!   an expiry after now, a priority 0-100); a lot is spendable from the credit that
//!   opened it until `expires_at` ([`spendable`]), and the balance is the sum of the
//!   spendable lots;
//! - a debit (charge, deduction) takes from the spendable lots in [`burn_order`], spanning
//!   several if it must, and its entry names each lot and what it took;
//! - expiry is absolute: at `expires_at` a lot's remainder leaves the balance whatever ran.
//!   A read judges lots at its own time ([`balance_at`]), so it never counts an expired lot;
//!   the ledger records an `expire` entry, dated `expires_at`, in the next change of that
//!   account, before the change itself, or on its own ([`Change::Settle`], which memesd's
//!   expirer asks for shortly after `expires_at`), whichever comes first;
//! - a ledger written before lots: an account's balance is one never-expiring paid lot, id 0
//!   ([`carried_over`]): the welcome grant's part cannot be told apart once charges were
//!   taken from one undivided balance;
//! - an account at a past instant ([`account_at`]) is its entries recorded by then, replayed
//!   onto its lots by the same rule the audit reads them with, and judged at that instant.
//!
//! Holds (two-phase spending, [`decide_lots`] too):
//! - a hold takes its tokens from the spendable lots in [`burn_order`], as a charge would, and
//!   keeps them (with the lots they came from, [`Hold::parts`]) until it ends, in exactly one
//!   way: captured (of at most what it holds; the rest goes back), voided (all goes back), or
//!   expired at its `expires_at` (all goes back), whatever ran;
//! - what goes back returns to the lot it came from (re-opened as it was if it was emptied
//!   meanwhile), except a part whose lot has expired by then: that part expires at once
//!   ([`give_back`]);
//! - expiry is absolute, as a lot's is: a read after `expires_at` counts what went back
//!   ([`settled_lots`]); the ledger records a `release` entry, dated `expires_at`, in the next
//!   change of that account (or a [`Change::Settle`]), in time order with the lots' expiries;
//! - a capture or a void of a hold that has expired, ended, or is not the user's is refused and
//!   changes nothing.
//!
//! Refunds ([`decide_refund`]):
//! - a refund reverses (part of) a `charge` entry of the account, or a hold's `capture` (of
//!   what it spent: the first tokens its hold took, [`captured_parts`]): never more than it
//!   spent minus what was refunded of it already; all that is left of it unless told less;
//! - its tokens go back to the lots the charge took them from, the last taken first (the
//!   reverse of burn order), each lot re-opened as it was if it was emptied meanwhile; a part
//!   whose lot has expired by then expires at once (refunded, but not back in the balance),
//!   as a hold's does ([`give_back`]);
//! - the entry names the charge it `reverses` and how many of its tokens it `refunded`;
//!   the audit checks each refund against its charge ([`Refundable`]).
//!
//! The clock is an argument (`now`, milliseconds since the epoch): the store reads its
//! clock, the tests move theirs.

use super::{HoldSummary, StoreError};
use crate::domain::{
    AccountView, DEFAULT_PRIORITY, Entry, EntryKind, Hold, HoldState, Lot, LotKind, LotTake,
    LotTerms, MAX_BALANCE, MAX_HOLD_TTL_MS, MAX_PRIORITY, Tier,
};
use crate::protocol::{Op, canonical};
use std::cmp::Ordering;

/// A change a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Tokens spent on delivered memes.
    Charge { cost: u64 },
    /// Tokens added (`amount` > 0, a lot on `terms`) or deducted (`amount` < 0, default
    /// terms only).
    Topup { amount: i64, terms: LotTerms },
    /// A tier, optionally until an instant (milliseconds since the epoch).
    Entitle { tier: Tier, until: Option<i64> },
    /// Tokens set aside from the lots for `ttl_ms` milliseconds. `id`: the hold's id when the
    /// store drew it before deciding (PostgreSQL numbers entries only as it writes them, but
    /// a stored reply names the hold); `None`: the seq of its entry (the file store).
    Hold {
        amount: u64,
        ttl_ms: i64,
        id: Option<u64>,
    },
    /// A hold ended by spending `amount` of its tokens (all if `None`); the rest goes back.
    Capture { hold: u64, amount: Option<u64> },
    /// A hold ended by giving all its tokens back.
    Void { hold: u64 },
    /// Nothing but what has ended by now: the `expire` and `release` entries every change
    /// writes first ([`decide_lots`]), written on their own (memesd's expirer, shortly after
    /// an expiry). Nothing due: no entry, and no error.
    Settle,
}

/// What a change does when it is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    entries: [Entry; 2],
    /// True when the change opens the account (its first entry is then the welcome grant).
    pub opens: bool,
    /// The account once the change is applied.
    pub after: AccountView,
}

impl Decision {
    /// The entries to record, in order: the welcome grant first when the account opens.
    pub fn entries(&self) -> &[Entry] {
        match self.opens {
            true => &self.entries,
            false => &self.entries[..1],
        }
    }

    /// The welcome grant (tokens) this change recorded before its own entry: when it opened
    /// the account with a grant (none where the grant is configured to 0).
    pub fn welcome(&self) -> Option<u64> {
        let grant = self.entries[0];
        (self.opens && grant.delta > 0).then_some(grant.delta as u64)
    }
}

/// Decides `change` for an account (`None`: the user has none yet). `welcome` is the grant
/// a new account opens with.
pub fn decide(
    user: &str,
    before: Option<&AccountView>,
    change: Change,
    welcome: u64,
) -> Result<Decision, StoreError> {
    let welcome_entry = Entry {
        kind: EntryKind::Welcome,
        delta: welcome as i64,
        balance: welcome,
    };
    let start = match before {
        Some(account) => *account,
        None if matches!(change, Change::Topup { amount, .. } if amount < 0) => {
            return Err(StoreError::UnknownUser(user.to_string()));
        }
        None => AccountView {
            balance: welcome,
            tier: Tier::Free,
            until: None,
        },
    };
    let (kind, delta) = match change {
        Change::Charge { cost } => (EntryKind::Charge, -(cost as i128)),
        Change::Topup { amount, .. } if amount < 0 => (EntryKind::Deduct, amount as i128),
        Change::Topup { amount, .. } => (EntryKind::Topup, amount as i128),
        Change::Entitle { .. } => (EntryKind::Entitle, 0),
        Change::Hold { amount, .. } => (EntryKind::Hold, -(amount as i128)),
        // What a hold gives back is decided by `decide_lots`, which never asks here.
        Change::Capture { .. } => (EntryKind::Capture, 0),
        Change::Void { .. } => (EntryKind::Void, 0),
        // A settle records only what `decide_lots` ends before a change: nothing of its own.
        Change::Settle => {
            return Err(StoreError::Internal(
                "a settle has no entry of its own to decide".into(),
            ));
        }
    };
    let balance = apply_delta(user, start.balance, delta)?;
    let mut after = AccountView { balance, ..start };
    if let Change::Entitle { tier, until } = change {
        after.tier = tier;
        after.until = until;
    }
    let own = Entry {
        kind,
        delta: delta as i64,
        balance,
    };
    let opens = before.is_none();
    Ok(Decision {
        entries: match opens {
            true => [welcome_entry, own],
            false => [own, own],
        },
        opens,
        after,
    })
}

/// The balance after adding `delta` tokens to `balance`: refused below zero (insufficient
/// tokens) and above [`MAX_BALANCE`].
pub fn apply_delta(user: &str, balance: u64, delta: i128) -> Result<u64, StoreError> {
    let after = balance as i128 + delta;
    if after < 0 {
        return Err(StoreError::InsufficientTokens {
            user: user.to_string(),
            balance,
            needed: delta.unsigned_abs().min(u64::MAX as u128) as u64,
        });
    }
    if after > MAX_BALANCE as i128 {
        return Err(StoreError::BalanceOverflow);
    }
    Ok(after as u64)
}

/// Whether an account can pay `cost` now (before producing something expensive to deliver);
/// the charge itself is decided again by [`decide`] when it is made.
pub fn affordable(user: &str, account: &AccountView, cost: u64) -> Result<(), StoreError> {
    apply_delta(user, account.balance, -(cost as i128)).map(|_| ())
}

/// Checks an entry as the ledger recorded it against the rules it must have been made by,
/// given its account's balance before it (`None`: the account had no entry yet). The
/// balance after it, or what is wrong. Readers of a ledger (the audit, start-up) call this
/// so that a forged or damaged record is judged by the same rules that made the real ones.
pub fn check_entry(before: Option<u64>, entry: &Entry) -> Result<u64, String> {
    let before = match (entry.kind, before) {
        (EntryKind::Welcome, None) => 0,
        (EntryKind::Welcome, Some(_)) => return Err("a second welcome grant".into()),
        (_, None) => return Err("the account's first entry is not the welcome grant".into()),
        (_, Some(before)) => before,
    };
    let sign_fits = match entry.kind {
        EntryKind::Welcome | EntryKind::Topup => entry.delta >= 0,
        EntryKind::Charge => entry.delta <= 0,
        EntryKind::Deduct | EntryKind::Expire | EntryKind::Hold => entry.delta < 0,
        EntryKind::Entitle => entry.delta == 0,
        EntryKind::Capture | EntryKind::Void | EntryKind::Release | EntryKind::Refund => {
            entry.delta >= 0
        }
    };
    if !sign_fits {
        return Err(format!(
            "a {} entry with delta {}",
            entry.kind.as_str(),
            entry.delta
        ));
    }
    let after = before as i128 + entry.delta as i128;
    if after < 0 {
        return Err(format!(
            "the balance went below zero ({before} {:+})",
            entry.delta
        ));
    }
    if after > MAX_BALANCE as i128 {
        return Err(format!(
            "the balance went above the maximum ({before} {:+})",
            entry.delta
        ));
    }
    if after as u64 != entry.balance {
        return Err(format!(
            "the balance is recorded as {} but {before} {:+} = {after}",
            entry.balance, entry.delta
        ));
    }
    Ok(after as u64)
}

/// The welcome grant a new account opens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Welcome {
    /// Tokens (0: no grant, no lot).
    pub tokens: u64,
    /// How long the grant's lot lasts (milliseconds from the account's opening); `None`: it
    /// never expires.
    pub expires_in: Option<i64>,
}

/// Whether `lot` can be spent at `t`: until `expires_at`, from the credit that opened it on.
///
/// Not "from `effective_at` on": a lot opens when its credit is decided (`effective_at` is
/// that credit's time, never later), and what comes after the credit is the ledger's order,
/// not the order of the clocks that stamped the changes. Two hosts, or a request that waited
/// on the account's lock while another's credit committed, can stamp a later change a little
/// earlier than the credit before it; that change must still see the lot (a new user hitting
/// three hosts at once was refused its first meme: the welcome lot opened by another host was
/// a millisecond "in the future" of the charge).
pub fn spendable(lot: &Lot, t: i64) -> bool {
    !expired(lot, t)
}

/// Whether `lot` has expired at `t` (at `expires_at` exactly, it has).
pub fn expired(lot: &Lot, t: i64) -> bool {
    lot.expires_at.is_some_and(|at| at <= t)
}

/// The order lots are spent in: priority ascending, then the soonest expiry (never-expiring
/// last), then promo before paid, then the earliest `effective_at`, then the lowest id. Total:
/// two lots of one account never compare equal (ids are unique).
pub fn burn_order(a: &Lot, b: &Lot) -> Ordering {
    let expiry = |lot: &Lot| lot.expires_at.map_or((1, 0), |at| (0, at));
    let kind = |lot: &Lot| match lot.kind {
        LotKind::Promo => 0,
        LotKind::Paid => 1,
    };
    a.priority
        .cmp(&b.priority)
        .then_with(|| expiry(a).cmp(&expiry(b)))
        .then_with(|| kind(a).cmp(&kind(b)))
        .then_with(|| a.effective_at.cmp(&b.effective_at))
        .then_with(|| a.id.cmp(&b.id))
}

/// Puts `lots` in [`burn_order`] (usually they already are: kept lots are).
fn sort_lots(lots: &mut [Lot]) {
    if !lots.is_sorted_by(|a, b| burn_order(a, b).is_lt()) {
        lots.sort_by(burn_order);
    }
}

/// The balance at `t`: the sum of the lots spendable then. What every read answers.
pub fn balance_at(lots: &[Lot], t: i64) -> u64 {
    lots.iter()
        .filter(|lot| spendable(lot, t))
        .map(|lot| lot.remaining)
        .sum()
}

/// The lots spendable at `t`, in burn order (what `lots` lists).
pub fn spendable_lots(lots: &[Lot], t: i64) -> Vec<Lot> {
    let mut spendable: Vec<Lot> = lots.iter().filter(|l| spendable(l, t)).copied().collect();
    spendable.sort_by(burn_order);
    spendable
}

/// An account's view at `t`: its balance counts only the lots spendable then (lots that
/// expired since its last change are not counted, their entries not yet written), and what
/// the holds expired by then gave back ([`settled_lots`]).
pub fn view_at(account: &AccountView, lots: &[Lot], holds: &[Hold], t: i64) -> AccountView {
    let holds_ended = holds
        .iter()
        .any(|hold| hold_state_at(hold, t) != hold.state);
    match lots.iter().any(|lot| !spendable(lot, t)) || holds_ended {
        false => *account,
        true => AccountView {
            balance: balance_at(&settled_lots(lots, holds, t), t),
            ..*account
        },
    }
}

/// A hold's state at `t`: an open hold has expired at its `expires_at` exactly, whether or not
/// its `release` entry is written yet.
pub fn hold_state_at(hold: &Hold, t: i64) -> HoldState {
    match hold.state {
        HoldState::Open if hold.expires_at <= t => HoldState::Expired,
        state => state,
    }
}

/// An account's lots at `t` once the open holds expired by then have given back what they
/// held, at their expiry, in time order (what reads judge; the `release` entries are written
/// later, by a [`Change::Settle`] or with the account's next change).
pub fn settled_lots(lots: &[Lot], holds: &[Hold], t: i64) -> Vec<Lot> {
    let mut lots = lots.to_vec();
    let mut ended: Vec<&Hold> = holds
        .iter()
        .filter(|hold| hold.state == HoldState::Open && hold.expires_at <= t)
        .collect();
    ended.sort_by_key(|hold| (hold.expires_at, hold.id));
    for hold in ended {
        give_back(&mut lots, hold, 0, hold.expires_at);
    }
    lots.sort_by(burn_order);
    lots
}

/// When something of an account ends next: the earliest `expires_at` of its lots and of its
/// open holds (`None`: nothing ever will). From then on a [`Change::Settle`] writes entries;
/// before it, none.
pub fn due_at(lots: &[Lot], holds: &[Hold]) -> Option<i64> {
    let lots = lots.iter().filter_map(|lot| lot.expires_at);
    let holds = holds
        .iter()
        .filter(|hold| hold.state == HoldState::Open)
        .map(|hold| hold.expires_at);
    lots.chain(holds).min()
}

/// Gives back, at `at`, what `hold` holds beyond the first `keep` tokens (those its capture
/// spends, in the order they were taken): each part to the lot it came from, re-opened as it
/// was if it was emptied meanwhile, except a part whose lot has expired by `at`, which expires
/// at once. What went back, lot by lot.
pub fn give_back(lots: &mut Vec<Lot>, hold: &Hold, keep: u64, at: i64) -> Vec<LotTake> {
    give_back_parts(lots, &hold.parts, keep, at)
}

/// [`give_back`] of `parts` (lots as they were, each holding what was taken from it, in the
/// order they were taken): all but the first `keep` tokens go back.
fn give_back_parts(lots: &mut Vec<Lot>, parts: &[Lot], keep: u64, at: i64) -> Vec<LotTake> {
    let mut spent = keep;
    let mut back = Vec::new();
    for part in parts {
        let kept = spent.min(part.remaining);
        spent -= kept;
        let tokens = part.remaining - kept;
        if tokens == 0 || expired(part, at) {
            continue;
        }
        match lots.iter_mut().find(|lot| lot.id == part.id) {
            Some(lot) => lot.remaining += tokens,
            None => lots.push(Lot {
                remaining: tokens,
                ..*part
            }),
        }
        back.push(LotTake {
            lot: part.id,
            tokens,
        });
    }
    back
}

/// Checks a hold's time to live (milliseconds): more than 0, at most [`MAX_HOLD_TTL_MS`].
pub fn check_ttl(ttl_ms: i64) -> Result<(), StoreError> {
    match (1..=MAX_HOLD_TTL_MS).contains(&ttl_ms) {
        true => Ok(()),
        false => Err(StoreError::Invalid(format!(
            "a hold's time to live is {ttl_ms} ms: give 1 ms to 7 days"
        ))),
    }
}

/// The refusal of a capture or a void of a hold that is no longer open at `now`.
pub fn hold_ended(hold: &Hold, now: i64) -> StoreError {
    match hold_state_at(hold, now) {
        HoldState::Open => StoreError::Internal(format!("hold {} is open", hold.id)),
        HoldState::Expired => StoreError::HoldExpired {
            hold: hold.id,
            at: crate::domain::format_instant(hold.expires_at),
        },
        state => StoreError::HoldClosed {
            hold: hold.id,
            state: state.as_str(),
        },
    }
}

/// The lot of a balance kept before lots existed: all of it, paid, never expiring, id 0
/// (`None` for an empty balance).
pub fn carried_over(balance: u64) -> Option<Lot> {
    (balance > 0).then_some(Lot {
        id: 0,
        amount: balance,
        remaining: balance,
        effective_at: 0,
        expires_at: None,
        priority: DEFAULT_PRIORITY,
        kind: LotKind::Paid,
    })
}

/// Checks the terms a credit asks for at `now`: an expiry after now, a priority 0-100.
pub fn check_terms(terms: &LotTerms, now: i64) -> Result<(), StoreError> {
    if terms.priority > MAX_PRIORITY {
        return Err(StoreError::Invalid(format!(
            "priority {} is out of range: give 0-{MAX_PRIORITY} (lower is spent first)",
            terms.priority
        )));
    }
    if let Some(at) = terms.expires_at
        && at <= now
    {
        return Err(StoreError::Invalid(format!(
            "the expiry {} is not in the future (now is {})",
            crate::domain::format_instant(at),
            crate::domain::format_instant(now)
        )));
    }
    Ok(())
}

/// One entry a change records, with what it did to the lots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub entry: Entry,
    /// When it took effect, if not when the change was made: an expiry, at `expires_at`.
    pub at: Option<i64>,
    /// The lot a credit opened.
    pub lot: Option<Lot>,
    /// What a debit, an expiry or a hold took, lot by lot, in burn order; what a capture, a
    /// void or a release gave back.
    pub from: Vec<LotTake>,
    /// The hold a hold, capture, void or release entry is about.
    pub hold: Option<u64>,
    /// What a capture spent (tokens).
    pub captured: Option<u64>,
    /// The charge a refund reverses (its seq).
    pub reverses: Option<u64>,
    /// Tokens of that charge a refund reversed (its delta, plus what expired at once).
    pub refunded: Option<u64>,
    /// The lots a refund re-opened, as they were (`remaining`: what came back to each): an
    /// emptied lot is no longer in the account, and a reader needs its terms.
    pub reopened: Vec<Lot>,
}

impl Posting {
    /// An entry that did nothing to the lots (yet).
    pub fn plain(entry: Entry) -> Posting {
        Posting {
            entry,
            at: None,
            lot: None,
            from: Vec::new(),
            hold: None,
            captured: None,
            reverses: None,
            refunded: None,
            reopened: Vec::new(),
        }
    }
}

/// What a change does to an account and its lots when it is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotDecision {
    /// The entries to record, in order: expiries first, then the welcome grant when the
    /// account opens, then the change's own.
    pub postings: Vec<Posting>,
    /// The account's lots once the change is applied (none empty), in burn order.
    pub lots: Vec<Lot>,
    /// True when the change opens the account.
    pub opens: bool,
    /// The account once the change is applied.
    pub after: AccountView,
    /// The holds the change opened or ended, as they are after it, in the order of its
    /// entries.
    pub holds: Vec<Hold>,
}

impl LotDecision {
    /// The welcome grant (tokens) this change recorded, when it opened the account.
    pub fn welcome(&self) -> Option<u64> {
        self.postings
            .iter()
            .find(|p| p.entry.kind == EntryKind::Welcome && p.entry.delta > 0)
            .map(|p| p.entry.delta as u64)
    }

    /// The hold a hold, a capture or a void (`change`) made or ended, as its reply tells it:
    /// as the change left it, with what the change gave back. None for any other change (one
    /// that only released expired holds on its way).
    pub fn hold(&self, change: Change) -> Option<HoldSummary> {
        match change {
            Change::Hold { .. } | Change::Capture { .. } | Change::Void { .. } => {
                let own = self.postings.last().map_or(0, |p| p.entry.delta);
                let returned = own.max(0) as u64;
                self.holds
                    .last()
                    .map(|hold| HoldSummary::of(hold, returned))
            }
            _ => None,
        }
    }
}

/// Decides `change` at `now` for an account and its lots (`None`: no account yet) and its
/// open holds (`holds`; for a capture or a void, the hold it names too, whatever its state),
/// whose entries will be numbered from `first_seq` (a lot's id, and a hold's, is the number
/// of the entry that opened it). Expired lots and holds end first, in time order
/// ([`EntryKind::Expire`] and [`EntryKind::Release`] entries), then [`decide`] decides the
/// change on what is left, a credit opens its lot and a debit or a hold takes from them in
/// [`burn_order`]. A refusal leaves everything as it was.
pub fn decide_lots(
    user: &str,
    before: Option<(&AccountView, &[Lot])>,
    holds: &[Hold],
    change: Change,
    welcome: Welcome,
    now: i64,
    first_seq: u64,
) -> Result<LotDecision, StoreError> {
    let terms = match change {
        Change::Topup { amount, terms } if amount > 0 => Some(terms),
        Change::Topup { terms, .. } if terms != LotTerms::default() => {
            return Err(StoreError::Invalid(
                "a deduction takes tokens from the lots in burn order: it has no expiry, priority or kind".into(),
            ));
        }
        _ => None,
    };
    if let Some(terms) = &terms {
        check_terms(terms, now)?;
    }
    if let Change::Hold { amount, ttl_ms, .. } = change {
        check_ttl(ttl_ms)?;
        if amount == 0 {
            return Err(StoreError::Invalid(
                "a hold of 0 tokens holds nothing".into(),
            ));
        }
    }
    let mut lots: Vec<Lot> = before.map_or_else(Vec::new, |(_, lots)| lots.to_vec());
    let mut open: Vec<Hold> = holds
        .iter()
        .filter(|hold| hold.state == HoldState::Open)
        .cloned()
        .collect();
    // Room for the usual change (a charge, or a welcome grant and a charge) without growing.
    let mut postings = Vec::with_capacity(2);
    let mut ended = Vec::new();
    let mut view = before.map(|(account, _)| *account);
    if let Some(account) = &mut view {
        settle(
            user,
            account,
            &mut lots,
            &mut open,
            now,
            &mut postings,
            &mut ended,
        )?;
    }
    if change == Change::Settle {
        // Never opens an account: there is nothing to end in one that does not exist.
        let Some(account) = view else {
            return Err(StoreError::UnknownUser(user.to_string()));
        };
        lots.sort_by(burn_order);
        return Ok(LotDecision {
            postings,
            lots,
            opens: false,
            after: account,
            holds: ended,
        });
    }
    if let Change::Capture { hold: id, .. } | Change::Void { hold: id } = change {
        let Some(account) = &mut view else {
            return Err(StoreError::UnknownHold(id, format!(" of user {user:?}")));
        };
        let Some(index) = open.iter().position(|hold| hold.id == id) else {
            let known = ended.iter().chain(holds).find(|hold| hold.id == id);
            return Err(match known {
                Some(hold) => hold_ended(hold, now),
                None => StoreError::UnknownHold(id, format!(" of user {user:?}")),
            });
        };
        let mut hold = open.remove(index);
        let (kind, state, keep) = match change {
            Change::Capture { amount, .. } => (
                EntryKind::Capture,
                HoldState::Captured,
                amount.unwrap_or(hold.amount),
            ),
            _ => (EntryKind::Void, HoldState::Voided, 0),
        };
        if keep == 0 && kind == EntryKind::Capture || keep > hold.amount {
            return Err(StoreError::Invalid(format!(
                "hold {id} holds {} tokens: a capture takes 1 to {} of them (a void gives all back)",
                hold.amount, hold.amount
            )));
        }
        let back = give_back(&mut lots, &hold, keep, now);
        let tokens: u64 = back.iter().map(|take| take.tokens).sum();
        account.balance = apply_delta(user, account.balance, tokens as i128)?;
        hold.captured = keep;
        hold.state = state;
        postings.push(Posting {
            entry: Entry {
                kind,
                delta: tokens as i64,
                balance: account.balance,
            },
            at: None,
            lot: None,
            from: back,
            hold: Some(id),
            captured: (kind == EntryKind::Capture).then_some(keep),
            reverses: None,
            refunded: None,
            reopened: Vec::new(),
        });
        ended.push(hold);
        lots.sort_by(burn_order);
        return Ok(LotDecision {
            postings,
            lots,
            opens: false,
            after: *account,
            holds: ended,
        });
    }
    let decision = decide(user, view.as_ref(), change, welcome.tokens)?;
    for entry in decision.entries() {
        let id = first_seq + postings.len() as u64;
        let opened = |amount: i64, terms: LotTerms| Lot {
            id,
            amount: amount as u64,
            remaining: amount as u64,
            effective_at: now,
            expires_at: terms.expires_at,
            priority: terms.priority,
            kind: terms.kind,
        };
        let mut posting = Posting {
            entry: *entry,
            at: None,
            lot: None,
            from: Vec::new(),
            hold: None,
            captured: None,
            reverses: None,
            refunded: None,
            reopened: Vec::new(),
        };
        match (entry.kind, terms, change) {
            (EntryKind::Welcome, _, _) if entry.delta > 0 => {
                let terms = LotTerms {
                    expires_at: welcome.expires_in.map(|ms| now.saturating_add(ms)),
                    priority: DEFAULT_PRIORITY,
                    kind: LotKind::Promo,
                };
                posting.lot = Some(opened(entry.delta, terms));
            }
            (EntryKind::Topup, Some(terms), _) => posting.lot = Some(opened(entry.delta, terms)),
            (EntryKind::Charge | EntryKind::Deduct, _, _) if entry.delta < 0 => {
                posting.from = burn(user, &mut lots, entry.delta.unsigned_abs(), now)?;
            }
            (
                EntryKind::Hold,
                _,
                Change::Hold {
                    amount,
                    ttl_ms,
                    id: drawn,
                },
            ) => {
                let id = drawn.unwrap_or(id);
                let was = lots.clone();
                posting.from = burn(user, &mut lots, amount, now)?;
                let expires_at = now.saturating_add(ttl_ms);
                posting.at = Some(expires_at);
                posting.hold = Some(id);
                ended.push(Hold {
                    id,
                    amount,
                    captured: 0,
                    parts: parts_of(&was, &posting.from),
                    created_at: now,
                    expires_at,
                    state: HoldState::Open,
                });
            }
            _ => {}
        }
        lots.extend(posting.lot);
        postings.push(posting);
    }
    sort_lots(&mut lots);
    Ok(LotDecision {
        postings,
        lots,
        opens: decision.opens,
        after: decision.after,
        holds: ended,
    })
}

/// An entry a refund is asked to reverse, as its store read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversed {
    /// Its seq.
    pub seq: u64,
    /// The account it is in.
    pub user: String,
    pub kind: EntryKind,
    /// Tokens it spent: a charge's (minus) delta, a capture's `captured`.
    pub spent: u64,
    /// The lots it spent from, in the order it took them (burn order), each as it was then,
    /// `remaining` being what it spent ([`parts_of`]; a capture's, [`captured_parts`]); empty
    /// for a charge recorded before lots.
    pub parts: Vec<Lot>,
    /// Tokens refunded of it already.
    pub refunded: u64,
}

/// Decides a refund at `now` of `amount` tokens (all that is left if `None`) of the entry
/// `reversed`, asked with `named` as its user (if the request named one), for its account
/// (`before`, with its open `holds`). Expired lots and holds end first, as in
/// [`decide_lots`]; then the refund gives back, the last taken first, to the lots the charge
/// took from ([`give_back`]'s rule: an emptied lot re-opens as it was, a part whose lot has
/// expired expires at once). Refused, changing nothing: an entry of another user than the
/// one named (as if there were none), anything but a charge or a hold's capture (which spent
/// the first `captured` tokens of the hold's parts: [`captured_parts`]), a charge recorded
/// before lots, a refund of 0 or of more than is left of the charge.
pub fn decide_refund(
    named: Option<&str>,
    before: Option<(&AccountView, &[Lot])>,
    holds: &[Hold],
    reversed: &Reversed,
    amount: Option<u64>,
    now: i64,
) -> Result<LotDecision, StoreError> {
    let user = reversed.user.as_str();
    if named.is_some_and(|named| named != user) {
        let of = named.map(|named| format!(" of user {named:?}"));
        return Err(StoreError::UnknownEntry(
            reversed.seq,
            of.unwrap_or_default(),
        ));
    }
    let id = reversed.seq;
    if !matches!(reversed.kind, EntryKind::Charge | EntryKind::Capture) {
        return Err(StoreError::Invalid(format!(
            "entry {id} is a {}: only a charge (or a hold's capture) can be refunded",
            reversed.kind.as_str()
        )));
    }
    let charged = reversed.spent;
    if charged > 0 && reversed.parts.is_empty() {
        return Err(StoreError::Invalid(format!(
            "entry {id} was recorded before lots: it names no lot to give its tokens back to"
        )));
    }
    let left = charged.saturating_sub(reversed.refunded);
    let amount = amount.unwrap_or(left);
    if left == 0 {
        return Err(StoreError::Invalid(format!(
            "entry {id} charged {charged} tokens, all refunded already: nothing is left to refund"
        )));
    }
    if amount == 0 || amount > left {
        return Err(StoreError::Invalid(format!(
            "entry {id} charged {charged} tokens, {} refunded already: a refund gives back 1 to {left}",
            reversed.refunded
        )));
    }
    let Some((account, lots)) = before else {
        return Err(StoreError::UnknownUser(user.to_string()));
    };
    let mut account = *account;
    let mut lots = lots.to_vec();
    let mut open: Vec<Hold> = holds
        .iter()
        .filter(|hold| hold.state == HoldState::Open)
        .cloned()
        .collect();
    let mut postings = Vec::with_capacity(1);
    let mut ended = Vec::new();
    settle(
        user,
        &mut account,
        &mut lots,
        &mut open,
        now,
        &mut postings,
        &mut ended,
    )?;
    let held: Vec<u64> = lots.iter().map(|lot| lot.id).collect();
    let parts = refundable_parts(&reversed.parts, left);
    let back = give_back_parts(&mut lots, &parts, left - amount, now);
    let tokens: u64 = back.iter().map(|take| take.tokens).sum();
    account.balance = apply_delta(user, account.balance, tokens as i128)?;
    let reopened = back
        .iter()
        .filter(|take| !held.contains(&take.lot))
        .filter_map(|take| {
            let was = parts.iter().find(|part| part.id == take.lot)?;
            Some(Lot {
                remaining: take.tokens,
                ..*was
            })
        })
        .collect();
    postings.push(Posting {
        from: back,
        reverses: Some(id),
        refunded: Some(amount),
        reopened,
        ..Posting::plain(Entry {
            kind: EntryKind::Refund,
            delta: tokens as i64,
            balance: account.balance,
        })
    });
    lots.sort_by(burn_order);
    Ok(LotDecision {
        postings,
        lots,
        opens: false,
        after: account,
        holds: ended,
    })
}

/// A charge of `cost` tokens as [`decide_lots`] decides it, in the case nearly every charge
/// is: an account with no open hold and no lot expired by `now`, whose first lot in burn order
/// holds more than `cost`. Nothing ends first, the charge takes from that lot alone and
/// empties none, so a store can apply it where it keeps the lots (lowering one lot's
/// `remaining`) without copying them. The charge's entry and what it took; `None` in any
/// other case (a charge of 0 too), which [`decide_lots`] decides.
pub fn quick_charge(
    account: &AccountView,
    lots: &[Lot],
    holds: &[Hold],
    cost: u64,
    now: i64,
) -> Option<(Entry, LotTake)> {
    let first = lots.first()?;
    let quick = cost > 0
        && first.remaining > cost
        && !holds.iter().any(|hold| hold.state == HoldState::Open)
        && !lots.iter().any(|lot| expired(lot, now));
    if !quick {
        return None;
    }
    debug_assert!(lots.is_sorted_by(|a, b| burn_order(a, b).is_lt()));
    let entry = Entry {
        kind: EntryKind::Charge,
        delta: -(cost as i64),
        // Never short (the first lot alone holds more): left to decide_lots if it were.
        balance: account.balance.checked_sub(cost)?,
    };
    let take = LotTake {
        lot: first.id,
        tokens: cost,
    };
    Some((entry, take))
}

/// Ends, in time order, what has ended by `now` since the account's last change: each lot
/// expired by then (an `expire` entry, dated its `expires_at`) and each open hold expired by
/// then (a `release` entry, dated its `expires_at`, giving back what it held). A lot that
/// expires at the very instant a hold does has expired when the hold gives back.
fn settle(
    user: &str,
    account: &mut AccountView,
    lots: &mut Vec<Lot>,
    open: &mut Vec<Hold>,
    now: i64,
    postings: &mut Vec<Posting>,
    ended: &mut Vec<Hold>,
) -> Result<(), StoreError> {
    loop {
        let lot = lots
            .iter()
            .filter_map(|lot| {
                lot.expires_at
                    .filter(|&at| at <= now)
                    .map(|at| (at, lot.id))
            })
            .min();
        let hold = open
            .iter()
            .filter(|hold| hold.expires_at <= now)
            .map(|hold| (hold.expires_at, hold.id))
            .min();
        match (lot, hold) {
            (Some((at, id)), hold) if hold.is_none_or(|(hold_at, _)| at <= hold_at) => {
                let index = lots.iter().position(|lot| lot.id == id).expect("found");
                let lot = lots.remove(index);
                account.balance = account.balance.checked_sub(lot.remaining).ok_or_else(|| {
                    StoreError::Internal(format!(
                        "user {user:?}'s lots add up to more than the balance"
                    ))
                })?;
                postings.push(Posting {
                    entry: Entry {
                        kind: EntryKind::Expire,
                        delta: -(lot.remaining as i64),
                        balance: account.balance,
                    },
                    at: Some(at),
                    lot: None,
                    from: vec![LotTake {
                        lot: lot.id,
                        tokens: lot.remaining,
                    }],
                    hold: None,
                    captured: None,
                    reverses: None,
                    refunded: None,
                    reopened: Vec::new(),
                });
            }
            (_, Some((at, id))) => {
                let index = open.iter().position(|hold| hold.id == id).expect("found");
                let mut hold = open.remove(index);
                let back = give_back(lots, &hold, 0, at);
                let tokens: u64 = back.iter().map(|take| take.tokens).sum();
                account.balance = apply_delta(user, account.balance, tokens as i128)?;
                hold.state = HoldState::Expired;
                postings.push(Posting {
                    entry: Entry {
                        kind: EntryKind::Release,
                        delta: tokens as i64,
                        balance: account.balance,
                    },
                    at: Some(at),
                    lot: None,
                    from: back,
                    hold: Some(id),
                    captured: None,
                    reverses: None,
                    refunded: None,
                    reopened: Vec::new(),
                });
                ended.push(hold);
            }
            _ => return Ok(()),
        }
    }
}

/// The parts of a hold or a charge: each lot it took from as it was (`was`), holding what
/// was taken, in the order taken.
pub fn parts_of(was: &[Lot], taken: &[LotTake]) -> Vec<Lot> {
    taken
        .iter()
        .filter_map(|take| {
            was.iter().find(|lot| lot.id == take.lot).map(|lot| Lot {
                remaining: take.tokens,
                ..*lot
            })
        })
        .collect()
}

/// Takes `tokens` from the lots spendable at `now`, in burn order; drained lots are removed.
fn burn(
    user: &str,
    lots: &mut Vec<Lot>,
    tokens: u64,
    now: i64,
) -> Result<Vec<LotTake>, StoreError> {
    sort_lots(&mut lots[..]);
    let mut left = tokens;
    let mut taken = Vec::new();
    for lot in lots.iter_mut().filter(|lot| spendable(lot, now)) {
        if left == 0 {
            break;
        }
        let take = left.min(lot.remaining);
        lot.remaining -= take;
        left -= take;
        taken.push(LotTake {
            lot: lot.id,
            tokens: take,
        });
    }
    if left > 0 {
        return Err(StoreError::InsufficientTokens {
            user: user.to_string(),
            balance: balance_at(lots, now),
            needed: tokens,
        });
    }
    lots.retain(|lot| lot.remaining > 0);
    Ok(taken)
}

/// Checks an account's lots as a reader found them kept (a checkpoint row, the daemon's
/// memory) against its balance: none empty, none with a priority out of range, no id twice,
/// and they add up to the balance (so none is negative and the balance is their sum).
pub fn check_lots(lots: &[Lot], balance: u64) -> Result<(), String> {
    let mut sum: u64 = 0;
    for (i, lot) in lots.iter().enumerate() {
        if lot.remaining == 0 || lot.remaining > lot.amount {
            return Err(format!(
                "lot {} has {} of {} tokens left",
                lot.id, lot.remaining, lot.amount
            ));
        }
        if lot.priority > MAX_PRIORITY {
            return Err(format!("lot {} has priority {}", lot.id, lot.priority));
        }
        if lots[..i].iter().any(|other| other.id == lot.id) {
            return Err(format!("lot {} is held twice", lot.id));
        }
        sum = sum.saturating_add(lot.remaining);
    }
    match sum == balance {
        true => Ok(()),
        false => Err(format!(
            "the lots add up to {sum} but the balance is {balance}"
        )),
    }
}

/// What a recorded entry says about lots (as a ledger reader found it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded<'a> {
    /// The terms of the lot a credit opened; `None` on a credit recorded before lots.
    pub opened: Option<LotTerms>,
    /// What a debit or an expiry took; empty on a debit recorded before lots.
    pub from: &'a [LotTake],
    /// An expiry's or a release's own date; a hold's expiry.
    pub at: Option<i64>,
    /// The hold a hold, capture, void or release entry is about.
    pub hold: Option<u64>,
    /// What a capture spent.
    pub captured: Option<u64>,
    /// The charge a refund reverses.
    pub reverses: Option<u64>,
    /// Tokens of it a refund reversed.
    pub refunded: Option<u64>,
    /// The lots a refund re-opened, as they were.
    pub reopened: &'a [Lot],
}

/// Replays one recorded entry (number `seq`, made at `time`) onto its account's lots,
/// checking it against the rules that made it: a credit opens a lot with its delta; a debit
/// takes exactly its delta from the lots spendable then, in burn order; an expiry takes the
/// whole remainder of a lot, dated its `expires_at`; nothing is taken from a lot that had
/// expired by then. An entry recorded before lots (a credit without terms, a debit without
/// lots) leaves its balance as one [`carried_over`] lot. A hold takes from the lots as a
/// debit does and joins the account's open `holds`; a capture, a void or a release ends an
/// open hold, giving back exactly what [`give_back`] does (a release at the hold's expiry, the
/// others before it); no entry but a release is made once an open hold has expired.
/// Afterwards the lots add up to the entry's balance. The hold the entry opened or ended, as
/// it is after it. For readers of a ledger: recovery and the audit.
pub fn replay_lots(
    lots: &mut Vec<Lot>,
    holds: &mut Vec<Hold>,
    entry: &Entry,
    recorded: Recorded,
    seq: u64,
    time: i64,
) -> Result<Option<Hold>, String> {
    let changed = match entry.kind {
        EntryKind::Hold | EntryKind::Capture | EntryKind::Void | EntryKind::Release => {
            Some(replay_hold(lots, holds, entry, recorded, seq, time)?)
        }
        EntryKind::Refund => {
            if let Some(hold) = holds.iter().find(|hold| hold.expires_at <= time) {
                return Err(format!(
                    "hold {} expired at {} but is still open when this entry was made ({time})",
                    hold.id, hold.expires_at
                ));
            }
            replay_refund(lots, entry, recorded, seq, time)?;
            None
        }
        _ => {
            // An expiry is dated its lot's expiry: a hold expiring at that instant or later
            // is released after it.
            let late = |hold: &&Hold| match (entry.kind, recorded.at) {
                (EntryKind::Expire, Some(at)) => hold.expires_at < at,
                _ => hold.expires_at <= time,
            };
            if let Some(hold) = holds.iter().find(late) {
                return Err(format!(
                    "hold {} expired at {} but is still open when this entry was made ({time})",
                    hold.id, hold.expires_at
                ));
            }
            replay_lot_entry(lots, entry, recorded, seq, time)?;
            None
        }
    };
    let sum: u64 = lots.iter().map(|lot| lot.remaining).sum();
    if sum != entry.balance {
        return Err(format!(
            "the lots add up to {sum} but the balance is recorded as {}",
            entry.balance
        ));
    }
    Ok(changed)
}

/// [`replay_lots`] for a hold's entries.
fn replay_hold(
    lots: &mut Vec<Lot>,
    holds: &mut Vec<Hold>,
    entry: &Entry,
    recorded: Recorded,
    seq: u64,
    time: i64,
) -> Result<Hold, String> {
    let id = recorded
        .hold
        .ok_or_else(|| format!("a {} entry names no hold", entry.kind.as_str()))?;
    // A release is dated its hold's expiry: lots expiring after that expire after it.
    let when = match entry.kind {
        EntryKind::Release => recorded.at.unwrap_or(time),
        _ => time,
    };
    if let Some(lot) = lots.iter().find(|lot| expired(lot, when)) {
        return Err(format!(
            "lot {} expired at {:?} but is still held when this entry was made ({time})",
            lot.id, lot.expires_at
        ));
    }
    if entry.kind == EntryKind::Hold {
        let expires_at = recorded.at.ok_or("a hold entry has no expiry")?;
        if expires_at <= time || expires_at - time > MAX_HOLD_TTL_MS {
            return Err(format!(
                "hold {id} (entry {seq}, made at {time}) expires at {expires_at}"
            ));
        }
        // Ids are the store's (the file store's is its entry's seq, PostgreSQL's from its own
        // sequence): what the rules can tell is that no open hold has it already.
        if holds.iter().any(|hold| hold.id == id) {
            return Err(format!("hold {id} (entry {seq}) is opened twice"));
        }
        if let Some(hold) = holds.iter().find(|hold| hold.expires_at <= time) {
            return Err(format!(
                "hold {} expired at {} but is still open when this entry was made ({time})",
                hold.id, hold.expires_at
            ));
        }
        let was = lots.clone();
        let amount = entry.delta.unsigned_abs();
        let expected = burn("", lots, amount, time)
            .map_err(|_| format!("holds {amount} tokens the lots do not hold"))?;
        if expected != recorded.from {
            return Err(format!(
                "holds {:?} from the lots, but the burn order takes {expected:?}",
                recorded.from
            ));
        }
        let hold = Hold {
            id,
            amount,
            captured: 0,
            parts: parts_of(&was, &expected),
            created_at: time,
            expires_at,
            state: HoldState::Open,
        };
        holds.push(hold.clone());
        return Ok(hold);
    }
    let index = holds
        .iter()
        .position(|hold| hold.id == id)
        .ok_or_else(|| format!("ends hold {id}, which is not open"))?;
    let mut hold = holds.remove(index);
    let (at, state, keep) = match entry.kind {
        EntryKind::Release => (recorded.at, HoldState::Expired, 0),
        EntryKind::Capture => (
            Some(time),
            HoldState::Captured,
            recorded.captured.unwrap_or(u64::MAX),
        ),
        _ => (Some(time), HoldState::Voided, 0),
    };
    let on_time = match entry.kind {
        EntryKind::Release => at == Some(hold.expires_at) && hold.expires_at <= time,
        _ => time < hold.expires_at,
    };
    if !on_time || keep > hold.amount || entry.kind == EntryKind::Capture && keep == 0 {
        return Err(format!(
            "a {} of hold {id} ({} tokens, expiring at {}) at {at:?} capturing {keep}",
            entry.kind.as_str(),
            hold.amount,
            hold.expires_at
        ));
    }
    if let Some(other) = holds
        .iter()
        .find(|other| other.expires_at < hold.expires_at.min(time + 1))
    {
        return Err(format!(
            "hold {} expired at {} but is still open when hold {id} ended",
            other.id, other.expires_at
        ));
    }
    let back = give_back(lots, &hold, keep, at.unwrap_or(time));
    let tokens: u64 = back.iter().map(|take| take.tokens).sum();
    if back != recorded.from || entry.delta != tokens as i64 {
        return Err(format!(
            "gives back {:?} ({:+}) from hold {id}, but its parts give back {back:?}",
            recorded.from, entry.delta
        ));
    }
    hold.captured = keep;
    hold.state = state;
    Ok(hold)
}

/// [`replay_lots`] for a refund: what it gave back goes to each lot it names, which must be
/// spendable then, the account's own or one it re-opened as it was (then within what the
/// lot was credited); its delta is what went back, at most what it says it refunded. That it
/// fits the charge it reverses is [`Refundable`]'s to check: a reader that starts from a
/// checkpoint has not seen the charge.
fn replay_refund(
    lots: &mut Vec<Lot>,
    entry: &Entry,
    recorded: Recorded,
    seq: u64,
    time: i64,
) -> Result<(), String> {
    let (Some(charge), Some(refunded)) = (recorded.reverses, recorded.refunded) else {
        return Err("a refund entry names no charge it reverses, or not what it refunded".into());
    };
    let back: u64 = recorded.from.iter().map(|take| take.tokens).sum();
    if charge >= seq || refunded == 0 || entry.delta < 0 || back != entry.delta as u64 {
        return Err(format!(
            "a refund of {refunded} tokens of entry {charge} gives back {:?} ({:+})",
            recorded.from, entry.delta
        ));
    }
    if back > refunded {
        return Err(format!(
            "a refund gives back {back} tokens but refunds {refunded}"
        ));
    }
    if let Some(lot) = lots.iter().find(|lot| expired(lot, time)) {
        return Err(format!(
            "lot {} expired at {:?} but is still held when this entry was made ({time})",
            lot.id, lot.expires_at
        ));
    }
    for reopened in recorded.reopened {
        if !recorded.from.iter().any(|take| take.lot == reopened.id) {
            return Err(format!(
                "re-opens lot {}, which it gives nothing",
                reopened.id
            ));
        }
    }
    for take in recorded.from {
        let lot = match lots.iter_mut().find(|lot| lot.id == take.lot) {
            Some(lot) => lot,
            None => {
                let Some(was) = recorded.reopened.iter().find(|lot| lot.id == take.lot) else {
                    return Err(format!(
                        "gives {} tokens back to lot {}, which the account does not hold and it does not re-open",
                        take.tokens, take.lot
                    ));
                };
                if expired(was, time) || was.priority > MAX_PRIORITY {
                    return Err(format!("re-opens lot {} as {was:?} at {time}", was.id));
                }
                lots.push(Lot {
                    remaining: 0,
                    ..*was
                });
                lots.last_mut().expect("pushed")
            }
        };
        lot.remaining += take.tokens;
        if take.tokens == 0 || lot.remaining > lot.amount {
            return Err(format!(
                "gives {} tokens back to lot {}, which then holds {} of {}",
                take.tokens, lot.id, lot.remaining, lot.amount
            ));
        }
    }
    Ok(())
}

/// What a reader of a whole ledger remembers of its charges, to check each refund against
/// the charge it reverses: a refund names a charge of its own account, refunds at most what
/// is left of it, and gives back only what [`decide_refund`] would have (its parts, the last
/// taken first; a part it leaves out expired at once). For the audits, which read every entry
/// from the first; a charge recorded before lots (naming none) cannot be refunded.
#[derive(Debug, Default)]
pub struct Refundable {
    charges: std::collections::HashMap<u64, ChargeLeft>,
    /// What each open hold took, lot by lot: a capture spends the first of it.
    holds: std::collections::HashMap<u64, Box<[LotTake]>>,
}

/// A charge as [`Refundable`] remembers it.
#[derive(Debug)]
struct ChargeLeft {
    user: Box<str>,
    /// What it took, lot by lot, in the order it took them.
    takes: Box<[LotTake]>,
    /// Tokens not refunded yet.
    left: u64,
}

impl Refundable {
    /// Notes entry `seq` of `user` once [`replay_lots`] accepted it: remembers a charge,
    /// checks a refund.
    pub fn note(
        &mut self,
        user: &str,
        seq: u64,
        entry: &Entry,
        recorded: Recorded,
    ) -> Result<(), String> {
        match entry.kind {
            EntryKind::Charge if !recorded.from.is_empty() => {
                self.charges.insert(
                    seq,
                    ChargeLeft {
                        user: user.into(),
                        takes: recorded.from.into(),
                        left: entry.delta.unsigned_abs(),
                    },
                );
                Ok(())
            }
            EntryKind::Hold => {
                if let Some(hold) = recorded.hold {
                    self.holds.insert(hold, recorded.from.into());
                }
                Ok(())
            }
            EntryKind::Void | EntryKind::Release => {
                recorded.hold.map(|hold| self.holds.remove(&hold));
                Ok(())
            }
            EntryKind::Capture => {
                let took = recorded.hold.and_then(|hold| self.holds.remove(&hold));
                let captured = recorded.captured.unwrap_or(0);
                if let Some(took) = took {
                    let mut room = captured;
                    let takes: Box<[LotTake]> = took
                        .iter()
                        .filter_map(|take| {
                            let tokens = take.tokens.min(room);
                            room -= tokens;
                            (tokens > 0).then_some(LotTake {
                                lot: take.lot,
                                tokens,
                            })
                        })
                        .collect();
                    self.charges.insert(
                        seq,
                        ChargeLeft {
                            user: user.into(),
                            takes,
                            left: captured,
                        },
                    );
                }
                Ok(())
            }
            EntryKind::Refund => {
                let charge = recorded.reverses.unwrap_or(0);
                let refunded = recorded.refunded.unwrap_or(0);
                let Some(left) = self
                    .charges
                    .get_mut(&charge)
                    .filter(|left| *left.user == *user)
                else {
                    return Err(format!(
                        "refunds entry {charge}, which is no charge or capture of user {user:?} naming its lots"
                    ));
                };
                if refunded == 0 || refunded > left.left {
                    return Err(format!(
                        "refunds {refunded} tokens of entry {charge}, which has {} left to refund",
                        left.left
                    ));
                }
                let parts: Vec<Lot> = left
                    .takes
                    .iter()
                    .map(|take| Lot {
                        id: take.lot,
                        amount: take.tokens,
                        remaining: take.tokens,
                        effective_at: 0,
                        expires_at: None,
                        priority: 0,
                        kind: LotKind::Paid,
                    })
                    .collect();
                let expected = give_back_parts(
                    &mut Vec::new(),
                    &refundable_parts(&parts, left.left),
                    left.left - refunded,
                    0,
                );
                let mut rest = expected.iter();
                if !recorded
                    .from
                    .iter()
                    .all(|take| rest.any(|expected| expected == take))
                {
                    return Err(format!(
                        "refunds {refunded} tokens of entry {charge} giving back {:?}, but its parts give back {expected:?} (less only what expired)",
                        recorded.from
                    ));
                }
                left.left -= refunded;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What a capture spent of its hold, lot by lot: the first `captured` tokens of its parts
/// (what [`give_back`] keeps), as a charge's parts are what it took.
pub fn captured_parts(hold: &Hold) -> Vec<Lot> {
    refundable_parts(&hold.parts, hold.captured)
}

/// What is left to refund of a charge's `parts` (in the order taken) when `left` tokens of it
/// are: the first `left` tokens (refunds give back the last taken first).
fn refundable_parts(parts: &[Lot], left: u64) -> Vec<Lot> {
    let mut room = left;
    parts
        .iter()
        .filter_map(|part| {
            let tokens = part.remaining.min(room);
            room -= tokens;
            (tokens > 0).then_some(Lot {
                remaining: tokens,
                ..*part
            })
        })
        .collect()
}

/// [`replay_lots`] for every entry but a hold's.
fn replay_lot_entry(
    lots: &mut Vec<Lot>,
    entry: &Entry,
    recorded: Recorded,
    seq: u64,
    time: i64,
) -> Result<(), String> {
    let moves = entry.delta != 0;
    let credit = entry.delta > 0;
    let legacy = moves
        && match credit {
            true => recorded.opened.is_none(),
            false => recorded.from.is_empty(),
        };
    if legacy {
        lots.clear();
        lots.extend(carried_over(entry.balance));
        return Ok(());
    }
    if entry.kind == EntryKind::Expire {
        let (Some(at), [take]) = (recorded.at, recorded.from) else {
            return Err("an expire entry names one lot and its date".into());
        };
        let Some(index) = lots.iter().position(|lot| lot.id == take.lot) else {
            return Err(format!("lot {} expires but the account has none", take.lot));
        };
        let lot = lots[index];
        if lot.expires_at != Some(at) || at > time {
            return Err(format!(
                "lot {} expires at {at}, but its expiry is {:?} (entry made at {time})",
                lot.id, lot.expires_at
            ));
        }
        if take.tokens != lot.remaining || entry.delta != -(take.tokens as i64) {
            return Err(format!(
                "lot {} had {} left when it expired, the entry takes {} ({:+})",
                lot.id, lot.remaining, take.tokens, entry.delta
            ));
        }
        lots.remove(index);
    } else {
        if let Some(lot) = lots.iter().find(|lot| expired(lot, time)) {
            return Err(format!(
                "lot {} expired at {:?} but is still held when this entry was made ({time})",
                lot.id, lot.expires_at
            ));
        }
        if credit {
            let terms = recorded.opened.expect("a credit with terms");
            check_terms(&terms, time).map_err(|e| e.to_string())?;
            if lots.iter().any(|lot| lot.id == seq) {
                return Err(format!("lot {seq} is opened twice"));
            }
            let amount = entry.delta as u64;
            lots.push(Lot {
                id: seq,
                amount,
                remaining: amount,
                effective_at: time,
                expires_at: terms.expires_at,
                priority: terms.priority,
                kind: terms.kind,
            });
        } else if moves {
            let expected = burn("", lots, entry.delta.unsigned_abs(), time)
                .map_err(|_| format!("takes {} tokens the lots do not hold", -entry.delta))?;
            if expected != recorded.from {
                return Err(format!(
                    "takes {:?} from the lots, but the burn order takes {expected:?}",
                    recorded.from
                ));
            }
        } else if recorded.opened.is_some() || !recorded.from.is_empty() {
            return Err("an entry that moves no tokens names lots".into());
        }
    }
    Ok(())
}

/// One recorded entry of an account, as [`account_at`] replays it: what
/// [`replay_lots`] reads, and the tier an `entitle` entry set.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub seq: u64,
    /// When the change that recorded it was made (milliseconds since the epoch): for an
    /// expiry, the change that wrote it, not its `expires_at`.
    pub time: i64,
    pub entry: Entry,
    pub recorded: Recorded<'a>,
    /// The tier an `entitle` entry set, and until when.
    pub entitled: Option<(Tier, Option<i64>)>,
}

/// An account as it was at an instant: its balance and tier then, and the lots it could
/// spend then, in burn order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Past {
    pub account: AccountView,
    pub lots: Vec<Lot>,
}

/// An account as it was at `t`, from its recorded entries (oldest first): those recorded by
/// `t` replayed onto its lots ([`replay_lots`]), then judged at `t` ([`view_at`],
/// [`spendable_lots`]), so a lot that had expired by `t` is not counted even where its
/// `expire` entry was written later; what a hold held at `t` is not counted, what a hold
/// expired by `t` gave back is ([`settled_lots`]). The entries taken are the ledger's order up to the
/// first recorded after `t` (two hosts' clocks may stamp a later entry a little earlier; the
/// ledger's order is what the lots followed). `None`: no entry by `t`, no account then. A
/// `t` after the last entry judges the lots as they are at `t`: what would be left if nothing
/// else happened but expiry.
pub fn account_at<'a>(
    steps: impl IntoIterator<Item = Step<'a>>,
    t: i64,
) -> Result<Option<Past>, String> {
    let mut lots = Vec::new();
    let mut holds = Vec::new();
    let mut account: Option<AccountView> = None;
    for step in steps {
        if step.time > t {
            break;
        }
        replay_lots(
            &mut lots,
            &mut holds,
            &step.entry,
            step.recorded,
            step.seq,
            step.time,
        )
        .map_err(|fault| format!("seq {}: {fault}", step.seq))?;
        let view = account.get_or_insert(AccountView {
            balance: 0,
            tier: Tier::Free,
            until: None,
        });
        view.balance = step.entry.balance;
        if let Some((tier, until)) = step.entitled {
            view.tier = tier;
            view.until = until;
        }
    }
    // What a hold open at `t` held is in no lot then (nor in the balance); what one expired
    // by `t` gave back is, even where its `release` entry was written later.
    Ok(account.map(|account| Past {
        account: view_at(&account, &lots, &holds, t),
        lots: spendable_lots(&settled_lots(&lots, &holds, t), t),
    }))
}

/// What a request with an idempotency key meets: the key is new, or it names this very
/// request (replay its stored reply), or another one (a conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    New,
    Replay,
}

/// Checks a key against the fingerprint stored with it, if it was used before.
pub fn check_key(key: &str, stored: Option<&str>, fingerprint: &str) -> Result<KeyUse, StoreError> {
    match stored {
        None => Ok(KeyUse::New),
        Some(stored) if stored == fingerprint => Ok(KeyUse::Replay),
        Some(_) => Err(StoreError::IdempotencyConflict {
            key: sent_key(key).to_string(),
        }),
    }
}

/// Who an idempotency key belongs to. Keys are scoped to their owner, as a payment provider
/// scopes them to an account: one owner's key is never another's conflict, so nobody can
/// block someone else's payment or learn that a key is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner<'a> {
    /// A user, for the charges of their own memes (whoever asks for them).
    User(&'a str),
    /// The admins, for their top-ups and deductions: the socket's admins and every admin key.
    Admins,
    /// The payment webhook, whose event ids are its keys.
    Webhook,
}

/// Separates a stored key's scope from the key its caller sent. A control character, which
/// neither user ids nor keys may contain, so no two (owner, key) pairs store alike and no
/// key stored before scoping (bare) looks scoped.
const SCOPE_END: char = '\u{1f}';

/// The key as stored: its owner's scope, then the key as sent.
pub fn scoped_key(owner: KeyOwner, sent: &str) -> String {
    match owner {
        KeyOwner::User(user) => format!("user:{user}{SCOPE_END}{sent}"),
        KeyOwner::Admins => format!("admins{SCOPE_END}{sent}"),
        KeyOwner::Webhook => format!("webhook{SCOPE_END}{sent}"),
    }
}

/// A stored key's scope (none for a key stored before keys were scoped) and the key as its
/// caller sent it.
pub fn split_key(stored: &str) -> (Option<&str>, &str) {
    match stored.split_once(SCOPE_END) {
        Some((scope, sent)) => (Some(scope), sent),
        None => (None, stored),
    }
}

/// The key as its caller sent it (what history and error messages show).
pub fn sent_key(stored: &str) -> &str {
    split_key(stored).1
}

/// The record a keyed request meets: the one stored under its scoped key or, in a ledger
/// written before keys were scoped, the one its owner stored under the bare key. `lookup`
/// reads a stored key's record, `fingerprint` the canonical request recorded with it.
pub fn find_key<T>(
    key: &str,
    mut lookup: impl FnMut(&str) -> Option<T>,
    fingerprint: impl Fn(&T) -> &str,
) -> Option<T> {
    if let Some(found) = lookup(key) {
        return Some(found);
    }
    let (Some(scope), sent) = split_key(key) else {
        return None;
    };
    lookup(sent).filter(|found| recorded_by(scope, fingerprint(found)))
}

/// The stored keys [`find_key`] may read for `key`: itself, and the bare key it was before
/// keys were scoped.
pub fn key_lookups(key: &str) -> impl Iterator<Item = &str> {
    let sent = sent_key(key);
    std::iter::once(key).chain((sent.len() != key.len()).then_some(sent))
}

/// Whether the owner with this scope recorded a bare key (stored before keys were scoped)
/// whose request was `fingerprint`: a `get` was recorded by the user it charged; a top-up by
/// the admins or the webhook, which the record does not tell apart (so both own it, as
/// both did then).
fn recorded_by(scope: &str, fingerprint: &str) -> bool {
    match canonical::recorded(fingerprint) {
        Some((Op::Get, user)) => scope.strip_prefix("user:") == Some(&*user),
        Some((Op::Topup, _)) => scope == "admins" || scope == "webhook",
        _ => false,
    }
}

/// Checks that a keyed entry fits its key's owner: a user's key is on a charge of theirs,
/// the admins' and the webhook's on a top-up or deduction. For the audit.
pub fn key_fits_entry(stored: &str, user: &str, kind: EntryKind) -> Result<(), String> {
    let fits = match split_key(stored).0 {
        None => true,
        Some(scope) => match scope.strip_prefix("user:") {
            Some(owner) => owner == user && matches!(kind, EntryKind::Charge | EntryKind::Capture),
            None => {
                matches!(scope, "admins" | "webhook")
                    && matches!(kind, EntryKind::Topup | EntryKind::Deduct)
                    || scope == "admins"
                        && matches!(
                            kind,
                            EntryKind::Hold
                                | EntryKind::Capture
                                | EntryKind::Void
                                | EntryKind::Refund
                        )
            }
        },
    };
    match fits {
        true => Ok(()),
        false => Err(format!(
            "idempotency key {:?} of {:?} is on a {} entry of user {user:?}",
            sent_key(stored),
            split_key(stored).0.unwrap_or_default(),
            kind.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ErrorCode;

    fn account(balance: u64) -> AccountView {
        AccountView {
            balance,
            tier: Tier::Free,
            until: None,
        }
    }

    #[test]
    fn a_new_account_opens_with_the_welcome_grant_first() {
        let decision = decide("u", None, Change::Charge { cost: 1 }, 150).unwrap();
        assert!(decision.opens);
        let kinds: Vec<_> = decision
            .entries()
            .iter()
            .map(|e| (e.kind, e.delta, e.balance))
            .collect();
        assert_eq!(
            kinds,
            [(EntryKind::Welcome, 150, 150), (EntryKind::Charge, -1, 149)]
        );
        assert_eq!(decision.after.balance, 149);
    }

    #[test]
    fn a_deduction_never_opens_an_account() {
        assert_eq!(
            decide(
                "ghost",
                None,
                Change::Topup {
                    amount: -5,
                    terms: LotTerms::default()
                },
                150
            ),
            Err(StoreError::UnknownUser("ghost".into()))
        );
        assert!(
            decide(
                "ghost",
                None,
                Change::Topup {
                    amount: 5,
                    terms: LotTerms::default()
                },
                150
            )
            .unwrap()
            .opens
        );
    }

    #[test]
    fn an_existing_account_gets_no_second_grant() {
        let decision = decide(
            "u",
            Some(&account(10)),
            Change::Topup {
                amount: 5,
                terms: LotTerms::default(),
            },
            150,
        )
        .unwrap();
        assert!(!decision.opens);
        assert_eq!(decision.entries().len(), 1);
        assert_eq!(decision.entries()[0].kind, EntryKind::Topup);
        assert_eq!(decision.after.balance, 15);
    }

    #[test]
    fn a_balance_never_goes_below_zero() {
        let refused = decide("u", Some(&account(3)), Change::Charge { cost: 4 }, 150).unwrap_err();
        assert_eq!(
            refused,
            StoreError::InsufficientTokens {
                user: "u".into(),
                balance: 3,
                needed: 4
            }
        );
        assert_eq!(
            decide("u", None, Change::Charge { cost: 151 }, 150)
                .unwrap_err()
                .code(),
            ErrorCode::InsufficientTokens,
            "a new user cannot overdraw the grant"
        );
        let exact = decide(
            "u",
            Some(&account(3)),
            Change::Topup {
                amount: -3,
                terms: LotTerms::default(),
            },
            150,
        )
        .unwrap();
        assert_eq!(exact.after.balance, 0);
        assert_eq!(exact.entries()[0].kind, EntryKind::Deduct);
        assert!(affordable("u", &account(3), 3).is_ok());
        assert!(affordable("u", &account(3), 4).is_err());
    }

    #[test]
    fn a_balance_never_exceeds_the_maximum() {
        let at_max = decide(
            "u",
            Some(&account(MAX_BALANCE - 1)),
            Change::Topup {
                amount: 1,
                terms: LotTerms::default(),
            },
            150,
        )
        .unwrap();
        assert_eq!(at_max.after.balance, MAX_BALANCE);
        assert_eq!(
            decide(
                "u",
                Some(&account(MAX_BALANCE)),
                Change::Topup {
                    amount: 1,
                    terms: LotTerms::default()
                },
                150
            ),
            Err(StoreError::BalanceOverflow)
        );
        assert_eq!(
            decide(
                "u",
                Some(&account(0)),
                Change::Charge { cost: u64::MAX },
                150
            )
            .unwrap_err()
            .code(),
            ErrorCode::InsufficientTokens,
            "no wrap-around"
        );
    }

    #[test]
    fn entitlements_move_no_tokens() {
        let decision = decide(
            "u",
            Some(&account(7)),
            Change::Entitle {
                tier: Tier::Premium,
                until: Some(99),
            },
            150,
        )
        .unwrap();
        assert_eq!(decision.entries()[0].delta, 0);
        assert_eq!(decision.entries()[0].kind, EntryKind::Entitle);
        assert_eq!(
            decision.after,
            AccountView {
                balance: 7,
                tier: Tier::Premium,
                until: Some(99)
            }
        );
    }

    #[test]
    fn recorded_entries_are_judged_by_the_same_rules() {
        let entry = |kind, delta: i64, balance| Entry {
            kind,
            delta,
            balance,
        };
        assert_eq!(
            check_entry(None, &entry(EntryKind::Welcome, 150, 150)),
            Ok(150)
        );
        assert_eq!(
            check_entry(Some(150), &entry(EntryKind::Charge, -1, 149)),
            Ok(149)
        );
        for (before, bad, why) in [
            (
                Some(5),
                entry(EntryKind::Welcome, 150, 155),
                "second welcome",
            ),
            (None, entry(EntryKind::Topup, 5, 5), "first entry"),
            (
                Some(5),
                entry(EntryKind::Charge, 1, 6),
                "a charge entry with delta 1",
            ),
            (Some(5), entry(EntryKind::Deduct, -6, 0), "below zero"),
            (Some(5), entry(EntryKind::Topup, 1, 60), "recorded as 60"),
            (
                Some(MAX_BALANCE),
                entry(EntryKind::Topup, 1, 0),
                "above the maximum",
            ),
        ] {
            let error = check_entry(before, &bad).unwrap_err();
            assert!(error.contains(why), "{error}");
        }
    }

    #[test]
    fn a_key_replays_its_request_and_refuses_another() {
        assert_eq!(check_key("k", None, "a"), Ok(KeyUse::New));
        assert_eq!(check_key("k", Some("a"), "a"), Ok(KeyUse::Replay));
        assert_eq!(
            check_key("k", Some("a"), "b"),
            Err(StoreError::IdempotencyConflict { key: "k".into() })
        );
    }

    #[test]
    fn keys_are_scoped_to_their_owner() {
        let alice = scoped_key(KeyOwner::User("alice"), "req-1");
        let bob = scoped_key(KeyOwner::User("bob"), "req-1");
        let admins = scoped_key(KeyOwner::Admins, "req-1");
        let webhook = scoped_key(KeyOwner::Webhook, "req-1");
        let all = [&alice, &bob, &admins, &webhook];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(sent_key(a), "req-1");
            for b in &all[i + 1..] {
                assert_ne!(a, b, "two owners' keys never store alike");
            }
        }
        // A user id may look like a scope: it still stores apart.
        assert_ne!(
            scoped_key(KeyOwner::User("admins"), "k"),
            scoped_key(KeyOwner::Admins, "k")
        );
        assert_eq!(split_key("bare"), (None, "bare"));
        assert_eq!(split_key(&alice), (Some("user:alice"), "req-1"));
        assert_eq!(key_lookups(&alice).collect::<Vec<_>>(), [&*alice, "req-1"]);
        assert_eq!(key_lookups("bare").collect::<Vec<_>>(), ["bare"]);
        assert_eq!(
            check_key(&alice, Some("a"), "b"),
            Err(StoreError::IdempotencyConflict {
                key: "req-1".into()
            }),
            "a conflict names the key as it was sent"
        );
    }

    #[test]
    fn a_bare_key_belongs_to_whoever_recorded_it() {
        let get = r#"{"op":"get","user":"alice","query":"cats"}"#;
        let topup = r#"{"op":"topup","user":"alice","amount":5}"#;
        let stored = [("k", get), ("e", topup)];
        let lookup = |key: &str| stored.iter().find(|(k, _)| *k == key).map(|(_, fp)| *fp);
        let find = |owner, sent| find_key(&scoped_key(owner, sent), lookup, |fp| fp);
        assert_eq!(find(KeyOwner::User("alice"), "k"), Some(get));
        assert_eq!(find(KeyOwner::User("bob"), "k"), None);
        assert_eq!(find(KeyOwner::Admins, "k"), None);
        assert_eq!(find(KeyOwner::Admins, "e"), Some(topup));
        assert_eq!(find(KeyOwner::Webhook, "e"), Some(topup));
        assert_eq!(find(KeyOwner::User("alice"), "e"), None);
        assert_eq!(find(KeyOwner::User("alice"), "absent"), None);
        // A scoped key is found as it is, whatever its record says.
        let scoped = scoped_key(KeyOwner::User("bob"), "k");
        assert_eq!(
            find_key(&scoped, |key| (key == scoped).then_some("x"), |fp| fp),
            Some("x")
        );
    }

    #[test]
    fn the_audit_checks_a_key_fits_its_entry() {
        let alice = scoped_key(KeyOwner::User("alice"), "k");
        assert!(key_fits_entry(&alice, "alice", EntryKind::Charge).is_ok());
        assert!(key_fits_entry(&alice, "bob", EntryKind::Charge).is_err());
        assert!(key_fits_entry(&alice, "alice", EntryKind::Topup).is_err());
        let webhook = scoped_key(KeyOwner::Webhook, "evt");
        assert!(key_fits_entry(&webhook, "alice", EntryKind::Topup).is_ok());
        assert!(key_fits_entry(&webhook, "alice", EntryKind::Charge).is_err());
        assert!(key_fits_entry("bare", "alice", EntryKind::Charge).is_ok());
        assert!(key_fits_entry("nobody\u{1f}k", "alice", EntryKind::Topup).is_err());
    }

    fn lot(id: u64, remaining: u64, expires_at: Option<i64>, priority: u8, kind: LotKind) -> Lot {
        Lot {
            id,
            amount: remaining,
            remaining,
            effective_at: 0,
            expires_at,
            priority,
            kind,
        }
    }

    fn terms(expires_at: Option<i64>, priority: u8, kind: LotKind) -> LotTerms {
        LotTerms {
            expires_at,
            priority,
            kind,
        }
    }

    fn charge_lots(lots: &[Lot], cost: u64, now: i64) -> Result<LotDecision, StoreError> {
        let balance = lots.iter().map(|l| l.remaining).sum();
        decide_lots(
            "u",
            Some((&account(balance), lots)),
            &[],
            Change::Charge { cost },
            Welcome::default(),
            now,
            100,
        )
    }

    proptest::proptest! {
        /// Whenever the quick charge applies, it is exactly what decide_lots decides: one
        /// charge entry, taking from the first lot alone, which it leaves non-empty.
        #[test]
        fn a_quick_charge_is_what_decide_lots_decides(
            specs in proptest::collection::vec(
                (1u64..50, proptest::option::of(0i64..20), 0u8..3, proptest::bool::ANY),
                1..6,
            ),
            held in proptest::option::of((1u64..5, proptest::bool::ANY)),
            cost in 0u64..60,
            now in 0i64..20,
        ) {
            let mut lots: Vec<Lot> = specs
                .iter()
                .enumerate()
                .map(|(i, &(remaining, expires_at, priority, promo))| {
                    let kind = if promo { LotKind::Promo } else { LotKind::Paid };
                    lot(i as u64 + 1, remaining, expires_at, priority * 25, kind)
                })
                .collect();
            lots.sort_by(burn_order);
            let holds: Vec<Hold> = held
                .iter()
                .map(|&(amount, open)| Hold {
                    id: 50,
                    amount,
                    captured: 0,
                    parts: vec![lot(60, amount, None, 50, LotKind::Paid)],
                    created_at: 0,
                    expires_at: 30,
                    state: if open { HoldState::Open } else { HoldState::Captured },
                })
                .collect();
            let balance = lots.iter().map(|l| l.remaining).sum();
            let view = account(balance);
            let Some((entry, take)) = quick_charge(&view, &lots, &holds, cost, now) else {
                return Ok(());
            };
            let decision = decide_lots(
                "u",
                Some((&view, &lots)),
                &holds,
                Change::Charge { cost },
                Welcome::default(),
                now,
                100,
            )
            .expect("a quick charge is allowed");
            proptest::prop_assert_eq!(decision.postings.len(), 1);
            proptest::prop_assert_eq!(decision.postings[0].entry, entry);
            proptest::prop_assert_eq!(&decision.postings[0].from, &vec![take]);
            let mut expected = lots.clone();
            expected[0].remaining -= cost;
            proptest::prop_assert_eq!(decision.lots, expected);
            proptest::prop_assert_eq!(decision.after.balance, entry.balance);
        }
    }

    #[test]
    fn the_burn_order_is_priority_expiry_promo_effective_id() {
        use LotKind::{Paid, Promo};
        let mut lots = [
            lot(1, 1, None, 50, Paid),
            lot(2, 1, None, 50, Promo),
            lot(3, 1, Some(900), 50, Paid),
            lot(4, 1, Some(800), 50, Paid),
            lot(5, 1, None, 10, Paid),
            lot(6, 1, Some(800), 50, Promo),
            Lot {
                effective_at: -5,
                ..lot(7, 1, None, 50, Paid)
            },
        ];
        lots.sort_by(burn_order);
        let ids: Vec<u64> = lots.iter().map(|l| l.id).collect();
        assert_eq!(ids, [5, 6, 4, 3, 2, 7, 1]);
    }

    #[test]
    fn a_charge_spans_lots_in_burn_order_and_names_them() {
        let lots = [
            lot(1, 10, None, 50, LotKind::Paid),
            lot(2, 5, Some(1_000), 50, LotKind::Paid),
        ];
        let decision = charge_lots(&lots, 8, 10).unwrap();
        assert_eq!(decision.postings.len(), 1);
        assert_eq!(
            decision.postings[0].from,
            [LotTake { lot: 2, tokens: 5 }, LotTake { lot: 1, tokens: 3 }]
        );
        assert_eq!(
            decision.lots,
            [Lot {
                remaining: 7,
                ..lots[0]
            }]
        );
        assert_eq!(decision.after.balance, 7);
        assert_eq!(
            charge_lots(&lots, 16, 10).unwrap_err().code(),
            crate::domain::ErrorCode::InsufficientTokens
        );
    }

    #[test]
    fn a_lot_expires_at_exactly_its_expiry_and_the_ledger_says_so() {
        let lots = [
            lot(1, 10, None, 50, LotKind::Paid),
            lot(2, 5, Some(1_000), 10, LotKind::Paid),
        ];
        assert_eq!(balance_at(&lots, 999), 15);
        assert_eq!(balance_at(&lots, 1_000), 10, "gone at expires_at");
        assert_eq!(view_at(&account(15), &lots, &[], 1_000).balance, 10);
        let decision = charge_lots(&lots, 1, 1_000).unwrap();
        let kinds: Vec<_> = decision
            .postings
            .iter()
            .map(|p| (p.entry.kind, p.entry.delta, p.entry.balance, p.at))
            .collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::Expire, -5, 10, Some(1_000)),
                (EntryKind::Charge, -1, 9, None)
            ]
        );
        assert_eq!(decision.postings[1].from, [LotTake { lot: 1, tokens: 1 }]);
        // A charge the unexpired lots cannot pay is refused, and the expiry is not written.
        assert!(charge_lots(&lots, 11, 1_000).is_err());
        assert!(charge_lots(&lots, 15, 999).is_ok());
    }

    #[test]
    fn credits_open_lots_on_their_terms() {
        let welcome = Welcome {
            tokens: 150,
            expires_in: Some(60_000),
        };
        let asked = terms(Some(5_000), 20, LotKind::Promo);
        let decision = decide_lots(
            "u",
            None,
            &[],
            Change::Topup {
                amount: 7,
                terms: asked,
            },
            welcome,
            1_000,
            41,
        )
        .unwrap();
        assert!(decision.opens);
        assert_eq!(decision.welcome(), Some(150));
        let opened: Vec<_> = decision.postings.iter().map(|p| p.lot.unwrap()).collect();
        assert_eq!(
            opened,
            [
                Lot {
                    id: 41,
                    amount: 150,
                    remaining: 150,
                    effective_at: 1_000,
                    expires_at: Some(61_000),
                    priority: DEFAULT_PRIORITY,
                    kind: LotKind::Promo
                },
                Lot {
                    id: 42,
                    amount: 7,
                    remaining: 7,
                    effective_at: 1_000,
                    expires_at: Some(5_000),
                    priority: 20,
                    kind: LotKind::Promo
                }
            ]
        );
        assert_eq!(
            decision.lots.iter().map(|l| l.id).collect::<Vec<_>>(),
            [42, 41]
        );
        assert_eq!(decision.after.balance, 157);
    }

    #[test]
    fn a_lot_opened_by_a_credit_stamped_later_is_spendable_by_the_change_after_it() {
        // Another host opened the account (welcome lot at 1,000); this host's charge was
        // stamped at 999, before it took the account's lock.
        let opened = decide_lots(
            "u",
            None,
            &[],
            Change::Charge { cost: 1 },
            Welcome {
                tokens: 150,
                expires_in: None,
            },
            1_000,
            1,
        )
        .unwrap();
        let charged = decide_lots(
            "u",
            Some((&opened.after, &opened.lots)),
            &[],
            Change::Charge { cost: 1 },
            Welcome::default(),
            999,
            3,
        )
        .unwrap();
        assert_eq!(charged.after.balance, 148);
        assert_eq!(charged.postings[0].from, [LotTake { lot: 1, tokens: 1 }]);
        assert_eq!(balance_at(&charged.lots, 999), 148);
        // The audit replays it so.
        let mut lots = vec![];
        for (seq, time, posting) in [
            (1, 1_000, &opened.postings[0]),
            (2, 1_000, &opened.postings[1]),
            (3, 999, &charged.postings[0]),
        ] {
            let recorded = Recorded {
                opened: posting.lot.map(|lot| LotTerms {
                    expires_at: lot.expires_at,
                    priority: lot.priority,
                    kind: lot.kind,
                }),
                from: &posting.from,
                ..Recorded::default()
            };
            replay_lots(&mut lots, &mut vec![], &posting.entry, recorded, seq, time).unwrap();
        }
        assert_eq!(lots, charged.lots);
    }

    #[test]
    fn bad_terms_are_refused_and_change_nothing() {
        let topup = |terms| {
            decide_lots(
                "u",
                None,
                &[],
                Change::Topup { amount: 5, terms },
                Welcome::default(),
                1_000,
                1,
            )
        };
        for (bad, why) in [
            (terms(Some(1_000), 50, LotKind::Paid), "not in the future"),
            (terms(Some(10), 50, LotKind::Paid), "not in the future"),
            (terms(None, 101, LotKind::Paid), "out of range"),
        ] {
            let error = topup(bad).unwrap_err();
            assert_eq!(error.code(), crate::domain::ErrorCode::InvalidArgument);
            assert!(error.to_string().contains(why), "{error}");
        }
        assert!(topup(terms(Some(1_001), 100, LotKind::Paid)).is_ok());
        let deduct = decide_lots(
            "u",
            Some((&account(5), &[lot(1, 5, None, 50, LotKind::Paid)][..])),
            &[],
            Change::Topup {
                amount: -1,
                terms: terms(None, 50, LotKind::Promo),
            },
            Welcome::default(),
            0,
            2,
        );
        assert_eq!(
            deduct.unwrap_err().code(),
            crate::domain::ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn recorded_lots_are_replayed_by_the_same_rules() {
        let mut lots = vec![];
        let welcome = Entry {
            kind: EntryKind::Welcome,
            delta: 10,
            balance: 10,
        };
        let promo = Recorded {
            opened: Some(terms(Some(500), 50, LotKind::Promo)),
            ..Recorded::default()
        };
        replay_lots(&mut lots, &mut vec![], &welcome, promo, 1, 0).unwrap();
        let paid = Entry {
            kind: EntryKind::Topup,
            delta: 5,
            balance: 15,
        };
        let opened = Recorded {
            opened: Some(LotTerms::default()),
            ..Recorded::default()
        };
        replay_lots(&mut lots, &mut vec![], &paid, opened, 2, 0).unwrap();
        let charge = Entry {
            kind: EntryKind::Charge,
            delta: -3,
            balance: 12,
        };
        let wrong = [LotTake { lot: 2, tokens: 3 }];
        let mut copy = lots.clone();
        let error = replay_lots(
            &mut copy,
            &mut vec![],
            &charge,
            Recorded {
                from: &wrong,
                ..Recorded::default()
            },
            3,
            10,
        )
        .unwrap_err();
        assert!(error.contains("burn order"), "{error}");
        let right = [LotTake { lot: 1, tokens: 3 }];
        let taken = Recorded {
            from: &right,
            ..Recorded::default()
        };
        replay_lots(&mut lots, &mut vec![], &charge, taken, 3, 10).unwrap();
        // Held past its expiry without an expire entry: refused.
        let error =
            replay_lots(&mut lots.clone(), &mut vec![], &charge, taken, 4, 500).unwrap_err();
        assert!(error.contains("expired"), "{error}");
        let expire = Entry {
            kind: EntryKind::Expire,
            delta: -7,
            balance: 5,
        };
        let gone = [LotTake { lot: 1, tokens: 7 }];
        let expiry = Recorded {
            from: &gone,
            at: Some(500),
            ..Recorded::default()
        };
        replay_lots(&mut lots, &mut vec![], &expire, expiry, 4, 600).unwrap();
        assert_eq!(lots.len(), 1);
        // A ledger written before lots: the balance is one carried-over lot.
        let old = Entry {
            kind: EntryKind::Topup,
            delta: 5,
            balance: 10,
        };
        replay_lots(&mut lots, &mut vec![], &old, Recorded::default(), 5, 700).unwrap();
        assert_eq!(lots, [carried_over(10).unwrap()]);
        assert_eq!(carried_over(0), None);
    }

    /// An account's state as a test of holds follows it: what each decision left, and every
    /// posting replayed as a ledger reader would.
    struct Held {
        view: AccountView,
        lots: Vec<Lot>,
        holds: Vec<Hold>,
        next_seq: u64,
        replayed: (Vec<Lot>, Vec<Hold>),
    }

    impl Held {
        fn new(lots: &[Lot]) -> Held {
            let balance = lots.iter().map(|l| l.remaining).sum();
            Held {
                view: account(balance),
                lots: lots.to_vec(),
                holds: vec![],
                next_seq: 100,
                replayed: (lots.to_vec(), vec![]),
            }
        }

        fn apply(&mut self, change: Change, now: i64) -> Result<LotDecision, StoreError> {
            let open: Vec<Hold> = self
                .holds
                .iter()
                .filter(|h| h.state == HoldState::Open)
                .cloned()
                .collect();
            let mut known = open.clone();
            if let Change::Capture { hold, .. } | Change::Void { hold } = change {
                known.extend(self.holds.iter().filter(|h| h.id == hold).cloned());
            }
            let decision = decide_lots(
                "u",
                Some((&self.view, &self.lots)),
                &known,
                change,
                Welcome::default(),
                now,
                self.next_seq,
            )?;
            for (i, posting) in decision.postings.iter().enumerate() {
                let recorded = Recorded {
                    opened: posting.lot.map(|lot| LotTerms {
                        expires_at: lot.expires_at,
                        priority: lot.priority,
                        kind: lot.kind,
                    }),
                    from: &posting.from,
                    at: posting.at,
                    hold: posting.hold,
                    captured: posting.captured,
                    ..Recorded::default()
                };
                let (lots, holds) = &mut self.replayed;
                replay_lots(
                    lots,
                    holds,
                    &posting.entry,
                    recorded,
                    self.next_seq + i as u64,
                    now,
                )
                .unwrap();
            }
            self.next_seq += decision.postings.len() as u64;
            self.view = decision.after;
            self.lots = decision.lots.clone();
            for hold in &decision.holds {
                self.holds.retain(|h| h.id != hold.id);
                self.holds.push(hold.clone());
            }
            let mut replayed = self.replayed.0.clone();
            replayed.sort_by(burn_order);
            assert_eq!(replayed, self.lots, "the replay derives the same lots");
            Ok(decision)
        }

        fn hold(&mut self, amount: u64, ttl_ms: i64, now: i64) -> Result<u64, StoreError> {
            let decision = self.apply(
                Change::Hold {
                    amount,
                    ttl_ms,
                    id: None,
                },
                now,
            )?;
            Ok(decision.holds.last().unwrap().id)
        }
    }

    #[test]
    fn a_settle_writes_what_has_ended_by_then_and_nothing_else() {
        let lots = [
            lot(1, 10, None, 50, LotKind::Paid),
            lot(2, 5, Some(1_000), 50, LotKind::Paid),
        ];
        let mut held = Held::new(&lots);
        // Takes 4 of lot 2's 5 (the soonest expiry), until 510.
        held.hold(4, 500, 10).unwrap();
        assert_eq!(due_at(&held.lots, &held.holds), Some(510));
        let quiet = held.apply(Change::Settle, 509).unwrap();
        assert!(quiet.postings.is_empty(), "nothing due: no entry");
        assert_eq!((held.view.balance, held.lots.len()), (11, 2));
        let settled = held.apply(Change::Settle, 2_000).unwrap();
        let written: Vec<_> = settled
            .postings
            .iter()
            .map(|p| (p.entry.kind, p.entry.delta, p.entry.balance, p.at))
            .collect();
        assert_eq!(
            written,
            [
                (EntryKind::Release, 4, 15, Some(510)),
                (EntryKind::Expire, -5, 10, Some(1_000)),
            ],
            "the hold gives back first, then lot 2 expires whole, each dated when it ended"
        );
        assert!(!settled.opens);
        assert_eq!(held.holds[0].state, HoldState::Expired);
        assert_eq!(due_at(&held.lots, &held.holds), None);
        let again = held.apply(Change::Settle, 3_000).unwrap();
        assert!(again.postings.is_empty(), "what was written is not again");
        assert_eq!(held.view.balance, 10);
    }

    #[test]
    fn a_settle_never_opens_an_account() {
        let welcome = Welcome {
            tokens: 150,
            expires_in: None,
        };
        assert_eq!(
            decide_lots("ghost", None, &[], Change::Settle, welcome, 0, 1),
            Err(StoreError::UnknownUser("ghost".into()))
        );
    }

    #[test]
    fn a_hold_takes_in_burn_order_and_a_capture_gives_the_rest_back_where_it_came_from() {
        let lots = [
            lot(1, 10, None, 50, LotKind::Paid),
            lot(2, 5, Some(10_000), 50, LotKind::Paid),
        ];
        let mut held = Held::new(&lots);
        let id = held.hold(8, 1_000, 10).unwrap();
        assert_eq!(held.view.balance, 7, "the balance drops at once");
        assert_eq!(
            held.lots,
            [Lot {
                remaining: 7,
                ..lots[0]
            }],
            "lot 2 is emptied"
        );
        let hold = held.holds[0].clone();
        assert_eq!(
            hold.parts,
            [
                lots[1],
                Lot {
                    remaining: 3,
                    ..lots[0]
                }
            ]
        );
        assert_eq!((hold.created_at, hold.expires_at), (10, 1_010));
        // A charge cannot take what is held.
        assert_eq!(
            held.apply(Change::Charge { cost: 8 }, 20)
                .unwrap_err()
                .code(),
            ErrorCode::InsufficientTokens
        );
        // Capture 6: lot 2's 5 and 1 of lot 1's are spent; 2 go back to lot 1.
        let decision = held
            .apply(
                Change::Capture {
                    hold: id,
                    amount: Some(6),
                },
                30,
            )
            .unwrap();
        let posting = decision.postings.last().unwrap();
        assert_eq!(
            (posting.entry.kind, posting.entry.delta),
            (EntryKind::Capture, 2)
        );
        assert_eq!(posting.from, [LotTake { lot: 1, tokens: 2 }]);
        assert_eq!(held.view.balance, 9);
        assert_eq!(held.holds[0].state, HoldState::Captured);
        assert_eq!(held.holds[0].captured, 6);
        // It ended once: a second capture or a void is refused and changes nothing.
        for again in [
            Change::Capture {
                hold: id,
                amount: None,
            },
            Change::Void { hold: id },
        ] {
            assert_eq!(
                held.apply(again, 40).unwrap_err().code(),
                ErrorCode::HoldClosed
            );
        }
        assert_eq!(held.view.balance, 9);
    }

    #[test]
    fn a_void_reopens_an_emptied_lot_as_it_was() {
        let lots = [
            lot(1, 10, None, 50, LotKind::Paid),
            lot(2, 5, Some(10_000), 20, LotKind::Promo),
        ];
        let mut held = Held::new(&lots);
        let id = held.hold(15, 1_000, 10).unwrap();
        assert_eq!((held.view.balance, held.lots.len()), (0, 0));
        held.apply(Change::Void { hold: id }, 20).unwrap();
        assert_eq!(held.view.balance, 15);
        let mut expected = lots.to_vec();
        expected.sort_by(burn_order);
        assert_eq!(held.lots, expected);
        assert_eq!(held.holds[0].state, HoldState::Voided);
    }

    #[test]
    fn a_hold_expires_at_its_expiry_whatever_ran_and_a_part_whose_lot_expired_expires_too() {
        let lots = [
            lot(1, 10, None, 50, LotKind::Paid),
            lot(2, 5, Some(500), 10, LotKind::Paid),
        ];
        let mut held = Held::new(&lots);
        let id = held.hold(7, 1_000, 0).unwrap();
        assert_eq!(held.view.balance, 8);
        // Reads judge it at their own time: at 999 it holds, at 1_000 what it took from lot
        // 1 is back and what it took from lot 2 (expired at 500) is gone with it.
        assert_eq!(view_at(&held.view, &held.lots, &held.holds, 999).balance, 8);
        assert_eq!(
            view_at(&held.view, &held.lots, &held.holds, 1_000).balance,
            10
        );
        assert_eq!(hold_state_at(&held.holds[0], 1_000), HoldState::Expired);
        // A capture after it is refused and writes nothing.
        let late = held.apply(
            Change::Capture {
                hold: id,
                amount: None,
            },
            1_000,
        );
        assert_eq!(late.unwrap_err().code(), ErrorCode::HoldExpired);
        // The next change writes the release, dated the expiry, after the lot's expiry.
        let decision = held.apply(Change::Charge { cost: 1 }, 2_000).unwrap();
        let written: Vec<_> = decision
            .postings
            .iter()
            .map(|p| (p.entry.kind, p.entry.delta, p.at, p.from.clone()))
            .collect();
        assert_eq!(
            written,
            [
                (
                    EntryKind::Release,
                    2,
                    Some(1_000),
                    vec![LotTake { lot: 1, tokens: 2 }]
                ),
                (
                    EntryKind::Charge,
                    -1,
                    None,
                    vec![LotTake { lot: 1, tokens: 1 }]
                ),
            ]
        );
        assert_eq!(held.view.balance, 9);
        assert_eq!(held.holds[0].state, HoldState::Expired);
        assert_eq!(
            held.apply(Change::Void { hold: id }, 2_001)
                .unwrap_err()
                .code(),
            ErrorCode::HoldExpired
        );
    }

    #[test]
    fn a_lot_expiring_after_a_hold_gives_back_takes_what_came_back_with_it() {
        let lots = [lot(1, 5, Some(2_000), 50, LotKind::Paid)];
        let mut held = Held::new(&lots);
        held.hold(3, 1_000, 0).unwrap();
        let decision = held.apply(
            Change::Topup {
                amount: 1,
                terms: LotTerms::default(),
            },
            3_000,
        );
        let kinds: Vec<_> = decision
            .unwrap()
            .postings
            .iter()
            .map(|p| (p.entry.kind, p.entry.delta, p.at))
            .collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::Release, 3, Some(1_000)),
                (EntryKind::Expire, -5, Some(2_000)),
                (EntryKind::Topup, 1, None),
            ]
        );
        assert_eq!(held.view.balance, 1);
    }

    /// A hold whose id the store drew before deciding (PostgreSQL) carries that id, not its
    /// entry's seq, and is ended by it.
    #[test]
    fn a_hold_decided_with_a_drawn_id_carries_it() {
        let lots = [lot(1, 10, None, 50, LotKind::Paid)];
        let hold = Change::Hold {
            amount: 4,
            ttl_ms: 1_000,
            id: Some(7_000),
        };
        let decide = |view: &AccountView, lots: &[Lot], holds: &[Hold], change, now| {
            decide_lots(
                "u",
                Some((view, lots)),
                holds,
                change,
                Welcome::default(),
                now,
                100,
            )
        };
        let held = decide(&account(10), &lots, &[], hold, 0).unwrap();
        assert_eq!(held.postings[0].hold, Some(7_000));
        assert_eq!((held.holds[0].id, held.after.balance), (7_000, 6));
        let void = Change::Void { hold: 7_000 };
        let voided = decide(&held.after, &held.lots, &held.holds, void, 1).unwrap();
        assert_eq!(
            (voided.postings[0].hold, voided.after.balance),
            (Some(7_000), 10)
        );
    }

    #[test]
    fn bad_holds_are_refused_and_change_nothing() {
        let mut held = Held::new(&[lot(1, 10, None, 50, LotKind::Paid)]);
        for ttl in [0, -1, MAX_HOLD_TTL_MS + 1] {
            let error = held.hold(1, ttl, 0).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidArgument, "ttl {ttl}");
        }
        assert_eq!(
            held.hold(0, 1_000, 0).unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            held.hold(11, 1_000, 0).unwrap_err().code(),
            ErrorCode::InsufficientTokens
        );
        let id = held.hold(4, MAX_HOLD_TTL_MS, 0).unwrap();
        for bad in [Some(0), Some(5)] {
            let error = held
                .apply(
                    Change::Capture {
                        hold: id,
                        amount: bad,
                    },
                    1,
                )
                .unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidArgument, "{bad:?}");
        }
        let error = held.apply(Change::Void { hold: 7 }, 1).unwrap_err();
        assert_eq!(error.code(), ErrorCode::NotFound);
        assert_eq!((held.view.balance, held.holds.len()), (6, 1));
        assert_eq!(held.holds[0].state, HoldState::Open);
    }

    #[test]
    fn the_replay_refuses_a_hold_that_gives_back_what_it_did_not_hold() {
        let mut held = Held::new(&[lot(1, 10, None, 50, LotKind::Paid)]);
        let id = held.hold(4, 1_000, 0).unwrap();
        let (mut lots, mut holds) = held.replayed.clone();
        let void = Entry {
            kind: EntryKind::Void,
            delta: 5,
            balance: 11,
        };
        let wrong = [LotTake { lot: 1, tokens: 5 }];
        let recorded = Recorded {
            from: &wrong,
            hold: Some(id),
            ..Recorded::default()
        };
        let error = replay_lots(&mut lots, &mut holds, &void, recorded, 200, 10).unwrap_err();
        assert!(error.contains("gives back"), "{error}");
        // Ending it twice, or one never made, is refused too.
        let (mut lots, mut holds) = held.replayed.clone();
        let right = [LotTake { lot: 1, tokens: 4 }];
        let recorded = Recorded {
            from: &right,
            hold: Some(id),
            ..Recorded::default()
        };
        let void = Entry {
            balance: 10,
            delta: 4,
            ..void
        };
        replay_lots(&mut lots, &mut holds, &void, recorded, 200, 10).unwrap();
        let again = Entry {
            balance: 14,
            ..void
        };
        let error = replay_lots(&mut lots, &mut holds, &again, recorded, 201, 10).unwrap_err();
        assert!(error.contains("not open"), "{error}");
        // A charge made once an open hold has expired, without its release: refused.
        let (mut lots, mut holds) = held.replayed.clone();
        let charge = Entry {
            kind: EntryKind::Charge,
            delta: -1,
            balance: 5,
        };
        let taken = [LotTake { lot: 1, tokens: 1 }];
        let recorded = Recorded {
            from: &taken,
            ..Recorded::default()
        };
        let error = replay_lots(&mut lots, &mut holds, &charge, recorded, 200, 1_000).unwrap_err();
        assert!(error.contains("still open"), "{error}");
    }

    /// An account that charges and refunds, every decision replayed as a reader would
    /// (its lots by `replay_lots`, each refund against its charge by `Refundable`).
    struct Refunding {
        view: AccountView,
        lots: Vec<Lot>,
        next_seq: u64,
        replayed: Vec<Lot>,
        replayed_holds: Vec<Hold>,
        charges: Vec<Reversed>,
        audit: Refundable,
    }

    impl Refunding {
        fn new(lots: &[Lot]) -> Refunding {
            let balance = lots.iter().map(|l| l.remaining).sum();
            Refunding {
                view: account(balance),
                lots: lots.to_vec(),
                next_seq: 100,
                replayed: lots.to_vec(),
                replayed_holds: Vec::new(),
                charges: Vec::new(),
                audit: Refundable::default(),
            }
        }

        fn record(&mut self, decision: &LotDecision, now: i64) {
            for (i, posting) in decision.postings.iter().enumerate() {
                let seq = self.next_seq + i as u64;
                let recorded = Recorded {
                    from: &posting.from,
                    at: posting.at,
                    hold: posting.hold,
                    captured: posting.captured,
                    reverses: posting.reverses,
                    refunded: posting.refunded,
                    reopened: &posting.reopened,
                    ..Recorded::default()
                };
                replay_lots(
                    &mut self.replayed,
                    &mut self.replayed_holds,
                    &posting.entry,
                    recorded,
                    seq,
                    now,
                )
                .unwrap();
                self.audit.note("u", seq, &posting.entry, recorded).unwrap();
            }
            self.next_seq += decision.postings.len() as u64;
            self.view = decision.after;
            self.lots = decision.lots.clone();
            self.replayed.sort_by(burn_order);
            assert_eq!(self.replayed, self.lots, "the replay derives the same lots");
        }

        /// Charges `cost`; the charge's index in `charges`.
        fn charge(&mut self, cost: u64, now: i64) -> usize {
            let was = self.lots.clone();
            let decision = decide_lots(
                "u",
                Some((&self.view, &self.lots)),
                &[],
                Change::Charge { cost },
                Welcome::default(),
                now,
                self.next_seq,
            )
            .unwrap();
            let posting = decision.postings.last().unwrap();
            self.charges.push(Reversed {
                seq: self.next_seq + decision.postings.len() as u64 - 1,
                user: "u".into(),
                kind: EntryKind::Charge,
                spent: posting.entry.delta.unsigned_abs(),
                parts: parts_of(&was, &posting.from),
                refunded: 0,
            });
            self.record(&decision, now);
            self.charges.len() - 1
        }

        fn refund(
            &mut self,
            charge: usize,
            amount: Option<u64>,
            now: i64,
        ) -> Result<LotDecision, StoreError> {
            let decision = decide_refund(
                Some("u"),
                Some((&self.view, &self.lots)),
                &[],
                &self.charges[charge],
                amount,
                now,
            )?;
            self.charges[charge].refunded += decision.postings.last().unwrap().refunded.unwrap();
            self.record(&decision, now);
            Ok(decision)
        }
    }

    #[test]
    fn a_refund_gives_back_the_last_taken_first_to_the_lots_it_came_from() {
        let lots = [
            lot(1, 10, None, 10, LotKind::Promo),
            lot(2, 10, None, 50, LotKind::Paid),
        ];
        let mut account = Refunding::new(&lots);
        let charge = account.charge(15, 10);
        assert_eq!(account.view.balance, 5);
        assert_eq!(account.lots.len(), 1, "lot 1 is emptied");
        // 3 back: the last taken were lot 2's.
        let decision = account.refund(charge, Some(3), 20).unwrap();
        let posting = decision.postings.last().unwrap();
        assert_eq!(
            (
                posting.entry.kind,
                posting.entry.delta,
                posting.entry.balance
            ),
            (EntryKind::Refund, 3, 8)
        );
        assert_eq!(posting.from, [LotTake { lot: 2, tokens: 3 }]);
        assert_eq!(
            (posting.reverses, posting.refunded),
            (Some(102 - 2), Some(3))
        );
        assert!(posting.reopened.is_empty());
        // All that is left (12): lot 2's other 2, then lot 1's 10, re-opened as it was.
        let decision = account.refund(charge, None, 30).unwrap();
        let posting = decision.postings.last().unwrap();
        assert_eq!(
            posting.from,
            [
                LotTake { lot: 1, tokens: 10 },
                LotTake { lot: 2, tokens: 2 }
            ]
        );
        assert_eq!(posting.refunded, Some(12));
        assert_eq!(posting.reopened, [lots[0]]);
        let mut expected = lots.to_vec();
        expected.sort_by(burn_order);
        assert_eq!(account.lots, expected);
        assert_eq!(account.view.balance, 20);
        // Nothing is left: refused, nothing changes.
        let error = account.refund(charge, Some(1), 40).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidArgument);
        assert!(error.to_string().contains("nothing is left"), "{error}");
        assert_eq!(account.view.balance, 20);
    }

    #[test]
    fn a_capture_is_refunded_from_what_it_spent_the_last_spent_first() {
        let lots = [
            lot(1, 10, None, 10, LotKind::Paid),
            lot(2, 10, None, 50, LotKind::Paid),
        ];
        let mut account = Refunding::new(&lots);
        let held = |account: &mut Refunding, change: Change, now: i64| {
            let decision = decide_lots(
                "u",
                Some((&account.view, &account.lots)),
                &account.replayed_holds.clone(),
                change,
                Welcome::default(),
                now,
                account.next_seq,
            )
            .unwrap();
            account.record(&decision, now);
            decision
        };
        let hold = held(
            &mut account,
            Change::Hold {
                amount: 15,
                ttl_ms: 1_000,
                id: None,
            },
            10,
        )
        .holds[0]
            .clone();
        // The capture spends lot 1's 10 and 2 of lot 2's; 3 go back to lot 2.
        let capture = held(
            &mut account,
            Change::Capture {
                hold: hold.id,
                amount: Some(12),
            },
            20,
        );
        let captured = capture.holds[0].clone();
        account.charges.push(Reversed {
            seq: account.next_seq - 1,
            user: "u".into(),
            kind: EntryKind::Capture,
            spent: 12,
            parts: captured_parts(&captured),
            refunded: 0,
        });
        assert_eq!(account.view.balance, 8);
        // 4 back: lot 2's 2, then 2 of lot 1's, re-opening it.
        let decision = account.refund(0, Some(4), 30).unwrap();
        let posting = decision.postings.last().unwrap();
        assert_eq!(
            posting.from,
            [LotTake { lot: 1, tokens: 2 }, LotTake { lot: 2, tokens: 2 }]
        );
        assert_eq!(posting.reopened.len(), 1);
        assert_eq!(account.view.balance, 12);
        let error = account.refund(0, Some(9), 40).unwrap_err();
        assert!(error.to_string().contains("1 to 8"), "{error}");
    }

    #[test]
    fn a_refund_to_an_expired_lot_expires_at_once() {
        let lots = [
            lot(1, 10, Some(1_000), 50, LotKind::Paid),
            lot(2, 10, None, 50, LotKind::Paid),
        ];
        let mut account = Refunding::new(&lots);
        let charge = account.charge(12, 10);
        assert_eq!(account.view.balance, 8);
        // At 2_000 lot 1 has expired (it was emptied: no expire entry). Refund 5: the last
        // 2 taken go back to lot 2, the 3 before them were lot 1's and expire at once.
        let decision = account.refund(charge, Some(5), 2_000).unwrap();
        let posting = decision.postings.last().unwrap();
        assert_eq!(posting.from, [LotTake { lot: 2, tokens: 2 }]);
        assert_eq!((posting.entry.delta, posting.refunded), (2, Some(5)));
        assert_eq!(account.view.balance, 10);
        // What is left (7) was all lot 1's: refunded, nothing comes back.
        let decision = account.refund(charge, None, 2_000).unwrap();
        let posting = decision.postings.last().unwrap();
        assert_eq!((posting.entry.delta, posting.refunded), (0, Some(7)));
        assert!(posting.from.is_empty());
        assert_eq!(account.view.balance, 10);
    }

    #[test]
    fn a_refund_after_a_lot_expired_writes_the_expiry_first() {
        let lots = [
            lot(1, 10, Some(1_000), 50, LotKind::Paid),
            lot(2, 10, None, 50, LotKind::Paid),
        ];
        let mut account = Refunding::new(&lots);
        let charge = account.charge(4, 10);
        let decision = account.refund(charge, None, 1_500).unwrap();
        let kinds: Vec<EntryKind> = decision.postings.iter().map(|p| p.entry.kind).collect();
        assert_eq!(kinds, [EntryKind::Expire, EntryKind::Refund]);
        assert_eq!(decision.postings[1].entry.delta, 0, "lot 1 had expired");
        assert_eq!(account.view.balance, 10);
    }

    #[test]
    fn bad_refunds_are_refused_and_change_nothing() {
        let lots = [lot(1, 10, None, 50, LotKind::Paid)];
        let mut account = Refunding::new(&lots);
        let charge = account.charge(4, 10);
        let reversed = account.charges[charge].clone();
        let before = Some((&account.view, &account.lots[..]));
        let refuse = |named: Option<&str>, reversed: &Reversed, amount| {
            decide_refund(named, before, &[], reversed, amount, 20).unwrap_err()
        };
        assert_eq!(
            refuse(Some("v"), &reversed, None),
            StoreError::UnknownEntry(reversed.seq, " of user \"v\"".into())
        );
        for amount in [Some(0), Some(5)] {
            let error = refuse(None, &reversed, amount);
            assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
            assert!(error.to_string().contains("1 to 4"), "{error}");
        }
        let topup = Reversed {
            kind: EntryKind::Topup,
            spent: 0,
            parts: Vec::new(),
            ..reversed.clone()
        };
        assert!(
            refuse(None, &topup, None)
                .to_string()
                .contains("only a charge")
        );
        let legacy = Reversed {
            parts: Vec::new(),
            ..reversed.clone()
        };
        assert!(
            refuse(None, &legacy, None)
                .to_string()
                .contains("before lots")
        );
        let spent = Reversed {
            refunded: 4,
            ..reversed.clone()
        };
        assert!(
            refuse(None, &spent, None)
                .to_string()
                .contains("nothing is left")
        );
    }

    #[test]
    fn the_audit_refuses_a_refund_its_charge_does_not_allow() {
        let lots = [lot(1, 10, None, 50, LotKind::Paid)];
        let mut account = Refunding::new(&lots);
        let charge = account.charge(4, 10);
        let seq = account.charges[charge].seq;
        let refund = |refunded: u64, back: u64, reverses: u64| {
            (
                Entry {
                    kind: EntryKind::Refund,
                    delta: back as i64,
                    balance: 6 + back,
                },
                vec![LotTake {
                    lot: 1,
                    tokens: back,
                }],
                reverses,
                refunded,
            )
        };
        let check = |audit: &mut Refundable, user: &str, (entry, from, reverses, refunded)| {
            let from: Vec<LotTake> = from;
            let recorded = Recorded {
                from: &from,
                reverses: Some(reverses),
                refunded: Some(refunded),
                ..Recorded::default()
            };
            audit.note(user, 200, &entry, recorded)
        };
        let audit = &mut account.audit;
        assert!(
            check(audit, "u", refund(5, 5, seq))
                .unwrap_err()
                .contains("4 left")
        );
        assert!(
            check(audit, "v", refund(1, 1, seq)).is_err(),
            "another user's"
        );
        assert!(
            check(audit, "u", refund(1, 1, seq - 1)).is_err(),
            "not a charge"
        );
        check(audit, "u", refund(3, 3, seq)).unwrap();
        assert!(
            check(audit, "u", refund(2, 2, seq))
                .unwrap_err()
                .contains("1 left")
        );
        // The replay refuses a refund that gives back more than the lot was credited.
        let mut lots = account.replayed.clone();
        let (entry, from, reverses, refunded) = refund(7, 7, seq);
        let recorded = Recorded {
            from: &from,
            reverses: Some(reverses),
            refunded: Some(refunded),
            ..Recorded::default()
        };
        let error = replay_lots(&mut lots, &mut Vec::new(), &entry, recorded, 200, 20);
        assert!(error.unwrap_err().contains("of 10"));
    }

    #[test]
    fn expired_premium_reads_free() {
        let premium = AccountView {
            balance: 0,
            tier: Tier::Premium,
            until: Some(1_000),
        };
        assert_eq!(premium.tier_at(999), Tier::Premium);
        assert_eq!(premium.tier_at(1_000), Tier::Free);
    }
}
