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
//!   account, before the change itself;
//! - a ledger written before lots: an account's balance is one never-expiring paid lot, id 0
//!   ([`carried_over`]): the welcome grant's part cannot be told apart once charges were
//!   taken from one undivided balance;
//! - an account at a past instant ([`account_at`]) is its entries recorded by then, replayed
//!   onto its lots by the same rule the audit reads them with, and judged at that instant.
//!
//! The clock is an argument (`now`, milliseconds since the epoch): the store reads its
//! clock, the tests move theirs.

use super::StoreError;
use crate::domain::{
    AccountView, DEFAULT_PRIORITY, Entry, EntryKind, Lot, LotKind, LotTake, LotTerms, MAX_BALANCE,
    MAX_PRIORITY, Tier,
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
        EntryKind::Deduct | EntryKind::Expire => entry.delta < 0,
        EntryKind::Entitle => entry.delta == 0,
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
/// expired since its last change are not counted, their entries not yet written).
pub fn view_at(account: &AccountView, lots: &[Lot], t: i64) -> AccountView {
    match lots.iter().any(|lot| !spendable(lot, t)) {
        false => *account,
        true => AccountView {
            balance: balance_at(lots, t),
            ..*account
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
    /// What a debit or an expiry took, lot by lot, in burn order.
    pub from: Vec<LotTake>,
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
}

impl LotDecision {
    /// The welcome grant (tokens) this change recorded, when it opened the account.
    pub fn welcome(&self) -> Option<u64> {
        self.postings
            .iter()
            .find(|p| p.entry.kind == EntryKind::Welcome && p.entry.delta > 0)
            .map(|p| p.entry.delta as u64)
    }
}

/// Decides `change` at `now` for an account and its lots (`None`: no account yet), whose
/// entries will be numbered from `first_seq` (a lot's id is the number of the entry that
/// opened it). Expired lots leave first ([`EntryKind::Expire`] entries), then [`decide`]
/// rules on the balance that is left, then the lots follow: a credit opens one, a debit
/// takes from them in [`burn_order`]. A refusal leaves everything as it was.
pub fn decide_lots(
    user: &str,
    before: Option<(&AccountView, &[Lot])>,
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
    let mut lots: Vec<Lot> = before.map_or_else(Vec::new, |(_, lots)| lots.to_vec());
    // Room for the usual change (a charge, or a welcome grant and a charge) without growing.
    let mut postings = Vec::with_capacity(2);
    let mut view = before.map(|(account, _)| *account);
    if let Some(account) = &mut view
        && lots.iter().any(|lot| expired(lot, now))
    {
        let mut gone: Vec<Lot> = lots.extract_if(.., |lot| expired(lot, now)).collect();
        gone.sort_by_key(|lot| (lot.expires_at, lot.id));
        for lot in gone {
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
                at: lot.expires_at,
                lot: None,
                from: vec![LotTake {
                    lot: lot.id,
                    tokens: lot.remaining,
                }],
            });
        }
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
        };
        match (entry.kind, terms) {
            (EntryKind::Welcome, _) if entry.delta > 0 => {
                let terms = LotTerms {
                    expires_at: welcome.expires_in.map(|ms| now.saturating_add(ms)),
                    priority: DEFAULT_PRIORITY,
                    kind: LotKind::Promo,
                };
                posting.lot = Some(opened(entry.delta, terms));
            }
            (EntryKind::Topup, Some(terms)) => posting.lot = Some(opened(entry.delta, terms)),
            (EntryKind::Charge | EntryKind::Deduct, _) if entry.delta < 0 => {
                posting.from = burn(user, &mut lots, entry.delta.unsigned_abs(), now)?;
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
    })
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
    /// An expiry's own date.
    pub at: Option<i64>,
}

/// Replays one recorded entry (number `seq`, made at `time`) onto its account's lots,
/// checking it against the rules that made it: a credit opens a lot with its delta; a debit
/// takes exactly its delta from the lots spendable then, in burn order; an expiry takes the
/// whole remainder of a lot, dated its `expires_at`; nothing is taken from a lot that had
/// expired by then. An entry recorded before lots (a credit without terms, a debit without
/// lots) leaves its balance as one [`carried_over`] lot. Afterwards the lots add up to the
/// entry's balance. For readers of a ledger: recovery and the audit.
pub fn replay_lots(
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
    let sum: u64 = lots.iter().map(|lot| lot.remaining).sum();
    if sum != entry.balance {
        return Err(format!(
            "the lots add up to {sum} but the balance is recorded as {}",
            entry.balance
        ));
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
/// `expire` entry was written later. The entries taken are the ledger's order up to the
/// first recorded after `t` (two hosts' clocks may stamp a later entry a little earlier; the
/// ledger's order is what the lots followed). `None`: no entry by `t`, no account then. A
/// `t` after the last entry judges the lots as they are at `t`: what would be left if nothing
/// else happened but expiry.
pub fn account_at<'a>(
    steps: impl IntoIterator<Item = Step<'a>>,
    t: i64,
) -> Result<Option<Past>, String> {
    let mut lots = Vec::new();
    let mut account: Option<AccountView> = None;
    for step in steps {
        if step.time > t {
            break;
        }
        replay_lots(&mut lots, &step.entry, step.recorded, step.seq, step.time)
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
    Ok(account.map(|account| Past {
        account: view_at(&account, &lots, t),
        lots: spendable_lots(&lots, t),
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
            Some(owner) => owner == user && kind == EntryKind::Charge,
            None => {
                matches!(scope, "admins" | "webhook")
                    && matches!(kind, EntryKind::Topup | EntryKind::Deduct)
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
            Change::Charge { cost },
            Welcome::default(),
            now,
            100,
        )
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
        assert_eq!(view_at(&account(15), &lots, 1_000).balance, 10);
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
            replay_lots(&mut lots, &posting.entry, recorded, seq, time).unwrap();
        }
        assert_eq!(lots, charged.lots);
    }

    #[test]
    fn bad_terms_are_refused_and_change_nothing() {
        let topup = |terms| {
            decide_lots(
                "u",
                None,
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
        replay_lots(&mut lots, &welcome, promo, 1, 0).unwrap();
        let paid = Entry {
            kind: EntryKind::Topup,
            delta: 5,
            balance: 15,
        };
        let opened = Recorded {
            opened: Some(LotTerms::default()),
            ..Recorded::default()
        };
        replay_lots(&mut lots, &paid, opened, 2, 0).unwrap();
        let charge = Entry {
            kind: EntryKind::Charge,
            delta: -3,
            balance: 12,
        };
        let wrong = [LotTake { lot: 2, tokens: 3 }];
        let mut copy = lots.clone();
        let error = replay_lots(
            &mut copy,
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
        replay_lots(&mut lots, &charge, taken, 3, 10).unwrap();
        // Held past its expiry without an expire entry: refused.
        let error = replay_lots(&mut lots.clone(), &charge, taken, 4, 500).unwrap_err();
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
        replay_lots(&mut lots, &expire, expiry, 4, 600).unwrap();
        assert_eq!(lots.len(), 1);
        // A ledger written before lots: the balance is one carried-over lot.
        let old = Entry {
            kind: EntryKind::Topup,
            delta: 5,
            balance: 10,
        };
        replay_lots(&mut lots, &old, Recorded::default(), 5, 700).unwrap();
        assert_eq!(lots, [carried_over(10).unwrap()]);
        assert_eq!(carried_over(0), None);
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
