//! The file store's state in memory: accounts, tiers and idempotency keys, and the journal
//! position they correspond to.
//!
//! Pure state: no I/O, no clock, no threads. Each change is decided by the money rules
//! ([`crate::store::rules`]) and, only if they allow it, (1) encoded as one journal line
//! appended to the caller's buffer, (2) applied to memory, and (3) described by undo steps,
//! so that the caller can take it back if that line never reaches the disk. A refused
//! change touches nothing: not the buffer, not memory.

use super::record::{RecordIn, RecordOut, RecordedEntry};
use crate::domain::{AccountView, Hold, HoldState, Lot, LotKind, LotTake, Tier};
use crate::store::rules::{self, Change, KeyUse, LotDecision, Reversed, Welcome};
use crate::store::{
    Changed, ChargeRequest, EndHold, HoldChange, HoldEnd, Idempotency, KeyedAs, Outcome,
    RefundChange, Refunded, StoreError, StoredReply, TopupChange,
};
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap};

/// Accounts by user id, in creation order. foldhash is several times faster than SipHash on
/// short keys; its per-process random seed keeps user-chosen ids from being aimed at buckets.
pub type AccountMap = IndexMap<Box<str>, Account, foldhash::fast::RandomState>;
/// Idempotency keys, in the order they were first used.
pub type KeyMap = IndexMap<Box<str>, KeyEntry, foldhash::fast::RandomState>;
/// Every hold by id, in the order they were made, with its user.
pub type HoldMap = IndexMap<u64, (Box<str>, Hold), foldhash::fast::RandomState>;

/// One account as the file store keeps it: the view every store shares, plus where its
/// latest journal line is. Accounts are never removed (except when undoing their creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Tokens: what the lots hold, as of the account's latest line (a lot that expired since
    /// is still in it until its expiry is written, by the expirer or the next change; reads
    /// judge lots at their own time, see [`Account::view_at`]).
    pub balance: u64,
    /// Byte offset in the journal of this account's latest transaction line.
    pub last: u64,
    /// The stored tier; see [`AccountView::tier_at`] for the effective one.
    pub tier: Tier,
    /// End of a premium entitlement, milliseconds since the epoch; `None` means no end.
    pub until: Option<i64>,
    /// What the balance is made of.
    pub lots: Lots,
    /// The ids of its open holds (as recorded: one past its expiry stays until its release
    /// is written, by the expirer or the next change), whose tokens are out of the lots.
    pub holds: Box<[u64]>,
}

impl Account {
    /// An account with nothing yet (what replay starts a new account from).
    pub fn empty(last: u64) -> Account {
        Account {
            balance: 0,
            last,
            tier: Tier::Free,
            until: None,
            lots: Lots::None,
            holds: Box::default(),
        }
    }

    /// What the rest of memes sees of it, as its latest line left it.
    pub fn view(&self) -> AccountView {
        AccountView {
            balance: self.balance,
            tier: self.tier,
            until: self.until,
        }
    }

    /// What the rest of memes sees of it at `now`: lots expired by then are not counted,
    /// what holds expired by then gave back is (`holds`: the ledger's).
    pub fn view_at(&self, holds: &HoldMap, now: i64) -> AccountView {
        match (&self.lots, self.holds.is_empty()) {
            (Lots::Many(lots), true) => rules::view_at(&self.view(), lots, &[], now),
            (_, true) => self.view(),
            (_, false) => rules::view_at(&self.view(), &self.lots(), &self.open_holds(holds), now),
        }
    }

    /// Its lots spendable at `now`, in burn order, with what holds expired by then gave back;
    /// and its holds still open then.
    pub fn lots_at(&self, holds: &HoldMap, now: i64) -> (Vec<Lot>, Vec<Hold>) {
        let mut open = self.open_holds(holds);
        let lots = rules::settled_lots(&self.lots(), &open, now);
        open.retain(|hold| rules::hold_state_at(hold, now) == HoldState::Open);
        (rules::spendable_lots(&lots, now), open)
    }

    /// Its open holds, from the ledger's.
    pub fn open_holds(&self, holds: &HoldMap) -> Vec<Hold> {
        self.holds
            .iter()
            .filter_map(|id| holds.get(id))
            .map(|(_, hold)| Hold {
                state: HoldState::Open,
                ..hold.clone()
            })
            .collect()
    }

    /// Takes `take` from one of its lots, where it is kept, leaving it non-empty (as
    /// [`rules::quick_charge`] decides).
    fn take(&mut self, take: LotTake) {
        self.balance -= take.tokens;
        if let Lots::Many(lots) = &mut self.lots
            && let Some(lot) = lots.iter_mut().find(|lot| lot.id == take.lot)
        {
            lot.remaining -= take.tokens;
        }
    }

    /// Gives back what [`Account::take`] took.
    fn give(&mut self, take: LotTake) {
        self.balance += take.tokens;
        if let Lots::Many(lots) = &mut self.lots
            && let Some(lot) = lots.iter_mut().find(|lot| lot.id == take.lot)
        {
            lot.remaining += take.tokens;
        }
    }

    /// Its lots, in burn order.
    pub fn lots(&self) -> Vec<Lot> {
        self.lots.to_vec(self.balance)
    }

    /// When something of it ends next ([`rules::due_at`]): a lot's expiry or an open
    /// hold's. No allocation for an account without open holds (most of them).
    pub fn due_at(&self, holds: &HoldMap) -> Option<i64> {
        let mut one = None;
        let lots = self.lots_in(&mut one);
        match self.holds.is_empty() {
            true => rules::due_at(lots, &[]),
            false => rules::due_at(lots, &self.open_holds(holds)),
        }
    }

    /// Its lots, in burn order, borrowed: the inline one is placed in `one` (no allocation,
    /// for a change that only reads them).
    pub fn lots_in<'a>(&'a self, one: &'a mut Option<Lot>) -> &'a [Lot] {
        self.lots.as_slice(self.balance, one)
    }
}

/// An account's lots, kept small: most accounts hold one lot that never expires (a ledger
/// written before lots, a single grant or top-up), and that one is kept inline, no larger
/// than its terms, its remainder being the account's balance; anything else is one boxed
/// slice. A million accounts of one lot each cost a million accounts of a balance, plus 32
/// bytes each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Lots {
    /// No lot (a balance of 0).
    #[default]
    None,
    /// One lot that never expires, holding the whole balance.
    One {
        id: u64,
        amount: u64,
        effective_at: i64,
        priority: u8,
        kind: LotKind,
    },
    /// Any other set, in burn order.
    Many(Box<[Lot]>),
}

impl Lots {
    /// The lots of an account with this `balance`, in burn order.
    pub fn to_vec(&self, balance: u64) -> Vec<Lot> {
        self.as_slice(balance, &mut None).to_vec()
    }

    /// The lots of an account with this `balance`, in burn order, borrowed: the inline one
    /// is placed in `one`.
    pub fn as_slice<'a>(&'a self, balance: u64, one: &'a mut Option<Lot>) -> &'a [Lot] {
        match self {
            Lots::None => &[],
            &Lots::One {
                id,
                amount,
                effective_at,
                priority,
                kind,
            } => std::slice::from_ref(one.insert(Lot {
                id,
                amount,
                remaining: balance,
                effective_at,
                expires_at: None,
                priority,
                kind,
            })),
            Lots::Many(lots) => lots,
        }
    }

    /// Keeps `lots` (in burn order, none empty).
    pub fn from_vec(lots: Vec<Lot>) -> Lots {
        match lots.as_slice() {
            [] => Lots::None,
            [lot] if lot.expires_at.is_none() => Lots::One {
                id: lot.id,
                amount: lot.amount,
                effective_at: lot.effective_at,
                priority: lot.priority,
                kind: lot.kind,
            },
            _ => Lots::Many(lots.into_boxed_slice()),
        }
    }
}

/// What an idempotency key remembers: the request's canonical form and the reply it got.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub fingerprint: Box<str>,
    pub reply: StoredReply,
}

/// One step to take back a change that did not reach the disk. Steps are undone newest
/// first, so creations are always at the tail of their maps.
#[derive(Debug, Clone)]
pub enum Undo {
    /// The last account was created by the change.
    Opened,
    /// The account at `index` looked like `before`.
    Changed { index: usize, before: Account },
    /// The account at `index` was charged `tokens` from its lot `lot`, in place; its latest
    /// line was at `last`.
    Charged {
        index: usize,
        lot: u64,
        tokens: u64,
        last: u64,
    },
    /// The last idempotency key was added by the change.
    Keyed,
    /// The last hold was made by the change.
    HoldMade,
    /// The hold `id` looked like `before`.
    HoldChanged { id: u64, before: Hold },
}

/// A change to one account, as the public operations describe it.
struct Transaction<'a, T = Changed> {
    user: &'a str,
    /// The hold a capture or a void names.
    hold: Option<u64>,
    what: What<'a>,
    memes: &'a [&'a str],
    reason: Option<&'a str>,
    keyed: Option<KeyedAs<'a, T>>,
}

/// What a transaction asks the rules to decide.
enum What<'a> {
    /// A change [`rules::decide_lots`] decides.
    Change(Change),
    /// A refund of `reversed` ([`rules::decide_refund`]).
    Refund {
        reversed: &'a Reversed,
        named: Option<&'a str>,
        amount: Option<u64>,
    },
}

/// Accounts, keys, and the journal position they correspond to.
#[derive(Debug)]
pub struct Ledger {
    accounts: AccountMap,
    keys: KeyMap,
    holds: HoldMap,
    /// The accounts in which something will end (a lot's expiry, an open hold's), by when
    /// ([`Account::due_at`]) then by index: what the expirer asks for is a range at the front,
    /// whatever the number of accounts. Kept exact wherever an account changes (a change, its
    /// undo, a replayed line), so it holds only accounts with an expiry to come or unwritten.
    due: BTreeSet<(i64, usize)>,
    /// Each indexed account's entry in `due`, by index (to move it when the account changes).
    due_of: HashMap<usize, i64, foldhash::fast::RandomState>,
    /// Sequence number of the next entry.
    next_seq: u64,
    /// Journal length in bytes once every applied change is written.
    end: u64,
    /// The grant an account opens with.
    welcome: Welcome,
}

impl Ledger {
    /// An empty ledger at the start of an empty journal.
    pub fn new(welcome: Welcome) -> Ledger {
        Ledger {
            accounts: AccountMap::default(),
            keys: KeyMap::default(),
            holds: HoldMap::default(),
            due: BTreeSet::new(),
            due_of: HashMap::default(),
            next_seq: 1,
            end: 0,
            welcome,
        }
    }

    /// A ledger restored from a checkpoint taken at journal offset `end`.
    pub fn restore(
        welcome: Welcome,
        next_seq: u64,
        end: u64,
        accounts: AccountMap,
        keys: KeyMap,
        holds: HoldMap,
    ) -> Ledger {
        let mut ledger = Ledger {
            accounts,
            keys,
            holds,
            due: BTreeSet::new(),
            due_of: HashMap::default(),
            next_seq,
            end,
            welcome,
        };
        for index in 0..ledger.accounts.len() {
            ledger.index_due(index);
        }
        ledger
    }

    /// Puts the account at `index` where it now belongs in `due` (out of it if nothing of it
    /// will end, or if there is no such account any more).
    fn index_due(&mut self, index: usize) {
        let due = self
            .accounts
            .get_index(index)
            .and_then(|(_, account)| account.due_at(&self.holds));
        let was = match due {
            Some(at) => self.due_of.insert(index, at),
            None => self.due_of.remove(&index),
        };
        if was != due {
            if let Some(at) = was {
                self.due.remove(&(at, index));
            }
            if let Some(at) = due {
                self.due.insert((at, index));
            }
        }
    }

    /// Up to `limit` users in whose account something has ended by `now` that no line has
    /// written yet, the longest due first.
    pub fn due(&self, now: i64, limit: usize) -> Vec<Box<str>> {
        self.due
            .range(..=(now, usize::MAX))
            .take(limit)
            .filter_map(|&(_, index)| self.accounts.get_index(index))
            .map(|(user, _)| user.clone())
            .collect()
    }

    pub fn account(&self, user: &str) -> Option<&Account> {
        self.accounts.get(user)
    }

    pub fn accounts_len(&self) -> usize {
        self.accounts.len()
    }

    /// The account at `index` in creation order (for checkpoints and audits in chunks).
    pub fn account_at(&self, index: usize) -> Option<(&str, &Account)> {
        self.accounts.get_index(index).map(|(k, v)| (&**k, v))
    }

    /// Every hold, by id, with its user.
    pub fn holds(&self) -> &HoldMap {
        &self.holds
    }

    /// `user`'s account as a read at `now` sees it (see [`Account::view_at`]).
    pub fn view_at(&self, user: &str, now: i64) -> Option<AccountView> {
        self.accounts
            .get(user)
            .map(|account| account.view_at(&self.holds, now))
    }

    /// `user`'s lots spendable at `now`, in burn order, and their holds open then.
    pub fn lots_at(&self, user: &str, now: i64) -> Option<(Vec<Lot>, Vec<Hold>)> {
        self.accounts
            .get(user)
            .map(|account| account.lots_at(&self.holds, now))
    }

    pub fn holds_len(&self) -> usize {
        self.holds.len()
    }

    /// The hold at `index` in the order holds were made (for checkpoints in chunks).
    pub fn hold_at(&self, index: usize) -> Option<(&str, &Hold)> {
        self.holds
            .get_index(index)
            .map(|(_, (user, hold))| (&**user, hold))
    }

    pub fn keys_len(&self) -> usize {
        self.keys.len()
    }

    pub fn key_at(&self, index: usize) -> Option<(&str, &KeyEntry)> {
        self.keys.get_index(index).map(|(k, v)| (&**k, v))
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Entries written so far (welcome, charges, top-ups, ...).
    pub fn entries(&self) -> u64 {
        self.next_seq - 1
    }

    /// Journal length once every applied change is written.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The reply stored for `idem`'s key, if the key was used for the same request; a
    /// conflict if it was used for another; `None` if it is new.
    pub fn replay(&self, idem: &Idempotency) -> Result<Option<StoredReply>, StoreError> {
        let stored = rules::find_key(
            idem.key,
            |key| self.keys.get(key),
            |entry| &entry.fingerprint,
        );
        match rules::check_key(
            idem.key,
            stored.map(|entry| &*entry.fingerprint),
            idem.fingerprint,
        )? {
            KeyUse::New => Ok(None),
            KeyUse::Replay => Ok(stored.map(|entry| entry.reply.clone())),
        }
    }

    /// Charges for delivered memes. Returns the balance after.
    pub fn charge(
        &mut self,
        request: ChargeRequest,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Outcome<u64>, StoreError> {
        if let Some(keyed) = &request.keyed
            && let Some(reply) = self.replay(&keyed.idem)?
        {
            return Ok(Outcome::Replayed(reply));
        }
        let request = match self.charge_in_place(request, now_ms, out, undo) {
            Ok(balance) => return Ok(Outcome::Applied(balance)),
            Err(request) => request,
        };
        let transaction = Transaction {
            user: request.user,
            hold: None,
            what: What::Change(Change::Charge { cost: request.cost }),
            memes: request.memes,
            reason: None,
            keyed: request.keyed,
        };
        self.transact(transaction, now_ms, out, undo)
            .map(|outcome| outcome.map(|changed| changed.balance))
    }

    /// A charge in the rules' quick case ([`rules::quick_charge`]: no open hold, nothing
    /// expired, the first lot holds more than the cost), applied where the account keeps its
    /// lots: that lot's remainder (for an account of one inline lot, the balance) goes down,
    /// and no lot is copied, nor the account. The balance after; the request back when the
    /// quick case does not apply (or the key was used: [`Ledger::charge`] replays first).
    fn charge_in_place<'r>(
        &mut self,
        request: ChargeRequest<'r>,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<u64, ChargeRequest<'r>> {
        let Some(index) = self.accounts.get_index_of(request.user) else {
            return Err(request);
        };
        let account = &self.accounts[index];
        let mut one = None;
        let lots = account.lots_in(&mut one);
        let quick = match account.holds.is_empty() {
            true => rules::quick_charge(&account.view(), lots, &[], request.cost, now_ms),
            false => None,
        };
        let Some((entry, take)) = quick else {
            return Err(request);
        };
        let changed = Changed {
            balance: entry.balance,
            welcome: None,
            hold: None,
        };
        let keyed = request
            .keyed
            .map(|keyed| (keyed.idem, (keyed.reply)(changed)));
        let entries = [RecordedEntry {
            from: vec![take],
            ..RecordedEntry::plain(entry)
        }];
        let line_len = RecordOut {
            seq: self.next_seq,
            time: now_ms,
            user: request.user,
            prev: Some(account.last),
            entries: &entries,
            memes: request.memes,
            key: keyed.as_ref().map(|(idem, _)| idem.key),
            fp: keyed.as_ref().map(|(idem, _)| idem.fingerprint),
            reply: keyed.as_ref().map(|(_, reply)| reply.as_json()),
            reason: None,
            tier: None,
            until: None,
        }
        .encode(out);
        let account = &mut self.accounts[index];
        undo.push(Undo::Charged {
            index,
            lot: take.lot,
            tokens: take.tokens,
            last: account.last,
        });
        // No lot comes or goes: the account's place in `due` is unchanged.
        account.take(take);
        account.last = self.end;
        self.keep_key(keyed, undo);
        self.end += line_len;
        self.next_seq += 1;
        Ok(entry.balance)
    }

    /// Adds (`amount` > 0) or deducts (`amount` < 0) tokens. Returns the balance after, and
    /// the welcome grant if the top-up opened the account.
    pub fn topup(
        &mut self,
        change: TopupChange,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Outcome<Changed>, StoreError> {
        let transaction = Transaction {
            user: change.user,
            hold: None,
            what: What::Change(Change::Topup {
                amount: change.amount,
                terms: change.terms,
            }),
            memes: &[],
            reason: change.reason,
            keyed: change.keyed,
        };
        self.transact(transaction, now_ms, out, undo)
    }

    /// Sets a tier (opening the account, with its welcome grant, if it is new).
    pub fn entitle(
        &mut self,
        user: &str,
        tier: Tier,
        until: Option<i64>,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Account, StoreError> {
        let transaction = Transaction {
            user,
            hold: None,
            what: What::Change(Change::Entitle { tier, until }),
            memes: &[],
            reason: None,
            keyed: None,
        };
        self.transact(transaction, now_ms, out, undo)?;
        Ok(self.accounts[user].clone())
    }

    /// Sets tokens aside in a hold.
    pub fn hold(
        &mut self,
        change: HoldChange,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Outcome<Changed>, StoreError> {
        let transaction = Transaction {
            user: change.user,
            hold: None,
            // Its entry's seq: known here, as the ledger numbers entries as it decides.
            what: What::Change(Change::Hold {
                amount: change.amount,
                ttl_ms: change.ttl_ms,
                id: None,
            }),
            memes: &[],
            reason: None,
            keyed: change.keyed,
        };
        self.transact(transaction, now_ms, out, undo)
    }

    /// Writes what has ended by `now` in `user`'s account ([`Change::Settle`]): how many
    /// entries (0: nothing was due, and no line is written).
    pub fn settle(
        &mut self,
        user: &str,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<u64, StoreError> {
        let transaction = Transaction {
            user,
            hold: None,
            what: What::Change(Change::Settle),
            memes: &[],
            reason: None,
            keyed: None,
        };
        let before = self.next_seq;
        self.transact(transaction, now_ms, out, undo)?;
        Ok(self.next_seq - before)
    }

    /// Captures or voids a hold.
    pub fn end_hold(
        &mut self,
        change: EndHold,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Outcome<Changed>, StoreError> {
        if let Some(keyed) = &change.keyed
            && let Some(reply) = self.replay(&keyed.idem)?
        {
            return Ok(Outcome::Replayed(reply));
        }
        let owner = match (self.holds.get(&change.hold), change.user) {
            (Some((owner, _)), Some(user)) if **owner != *user => None,
            (found, _) => found.map(|(owner, _)| owner.clone()),
        };
        let Some(owner) = owner else {
            let of = change.user.map(|user| format!(" of user {user:?}"));
            return Err(StoreError::UnknownHold(change.hold, of.unwrap_or_default()));
        };
        let transaction = Transaction {
            user: &owner,
            hold: Some(change.hold),
            what: What::Change(match change.end {
                HoldEnd::Capture { amount } => Change::Capture {
                    hold: change.hold,
                    amount,
                },
                HoldEnd::Void => Change::Void { hold: change.hold },
            }),
            memes: change.memes,
            reason: None,
            keyed: change.keyed,
        };
        self.transact(transaction, now_ms, out, undo)
    }

    /// Refunds (part of) `reversed`, as read from the journal by a reader that started from
    /// its user's latest line at `last`. `None` when the account has changed since (the
    /// reader must read again: what it read may be out of date; `change` is left as it was);
    /// the stored reply when the key names this very request.
    pub fn refund(
        &mut self,
        change: &mut RefundChange,
        reversed: &Reversed,
        last: u64,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Option<Outcome<Refunded>>, StoreError> {
        if let Some(keyed) = &change.keyed
            && let Some(reply) = self.replay(&keyed.idem)?
        {
            return Ok(Some(Outcome::Replayed(reply)));
        }
        if self
            .accounts
            .get(reversed.user.as_str())
            .is_none_or(|account| account.last != last)
        {
            return Ok(None);
        }
        let transaction = Transaction {
            user: &reversed.user,
            hold: None,
            what: What::Refund {
                reversed,
                named: change.user,
                amount: change.amount,
            },
            memes: &[],
            reason: None,
            keyed: change.keyed.take(),
        };
        let left = reversed.spent.saturating_sub(reversed.refunded);
        let summarize = |changed: Changed, decision: &LotDecision, first_seq: u64| {
            let posting = decision.postings.last().expect("a refund posts its entry");
            let refunded = posting.refunded.unwrap_or(0);
            Refunded {
                balance: changed.balance,
                refund: first_seq + decision.postings.len() as u64 - 1,
                reverses: reversed.seq,
                refunded,
                returned: posting.entry.delta.unsigned_abs(),
                left: left - refunded,
            }
        };
        self.transact_as(transaction, now_ms, out, undo, summarize)
            .map(Some)
    }

    /// Decides a change by the rules and, if allowed, encodes its journal line into `out`,
    /// applies it to memory and records how to undo it. A refusal touches nothing.
    fn transact(
        &mut self,
        transaction: Transaction,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Outcome<Changed>, StoreError> {
        self.transact_as(transaction, now_ms, out, undo, |changed, _, _| changed)
    }

    /// [`Ledger::transact`], its outcome described by `summarize` (given what changed, the
    /// decision and the seq of its first entry), which is also what a key's reply is made
    /// from.
    fn transact_as<T: Copy>(
        &mut self,
        transaction: Transaction<'_, T>,
        now_ms: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
        summarize: impl FnOnce(Changed, &LotDecision, u64) -> T,
    ) -> Result<Outcome<T>, StoreError> {
        if let Some(keyed) = &transaction.keyed
            && let Some(reply) = self.replay(&keyed.idem)?
        {
            return Ok(Outcome::Replayed(reply));
        }
        let existing = self.accounts.get_full(transaction.user);
        let mut one = None;
        let before = existing.map(|(_, _, account)| (account.view(), account.lots_in(&mut one)));
        let mut holds =
            existing.map_or_else(Vec::new, |(_, _, account)| account.open_holds(&self.holds));
        if let Some(id) = transaction.hold
            && !holds.iter().any(|hold| hold.id == id)
            && let Some((_, hold)) = self.holds.get(&id)
        {
            holds.push(hold.clone());
        }
        let before = before.as_ref().map(|(view, lots)| (view, *lots));
        let change = match transaction.what {
            What::Change(change) => Some(change),
            What::Refund { .. } => None,
        };
        let decision = match transaction.what {
            What::Change(change) => rules::decide_lots(
                transaction.user,
                before,
                &holds,
                change,
                self.welcome,
                now_ms,
                self.next_seq,
            )?,
            What::Refund {
                reversed,
                named,
                amount,
            } => rules::decide_refund(named, before, &holds, reversed, amount, now_ms)?,
        };
        let welcome = decision.welcome();
        let after = decision.after;
        let hold = change.and_then(|change| decision.hold(change));
        let changed = summarize(
            Changed {
                balance: after.balance,
                welcome,
                hold,
            },
            &decision,
            self.next_seq,
        );
        if decision.postings.is_empty() {
            // A settle that found nothing due: no line. (Were the account indexed as due, it
            // would be asked about again and again: index it anew.)
            if let Some((index, _, _)) = existing {
                self.index_due(index);
            }
            return Ok(Outcome::Applied(changed));
        }
        // Into a new vector: collecting in place would shrink the postings' allocation to
        // fit (a realloc per change, dearer than an allocation).
        let mut entries: Vec<RecordedEntry> = Vec::with_capacity(decision.postings.len());
        entries.extend(decision.postings.into_iter().map(RecordedEntry::from));
        let keyed = transaction
            .keyed
            .map(|keyed| (keyed.idem, (keyed.reply)(changed)));
        let offset = self.end;
        let tier = match change {
            Some(Change::Entitle { tier, until }) => Some((tier, until)),
            _ => None,
        };
        let line_len = RecordOut {
            seq: self.next_seq,
            time: now_ms,
            user: transaction.user,
            prev: existing.map(|(_, _, account)| account.last),
            entries: &entries,
            memes: transaction.memes,
            key: keyed.as_ref().map(|(idem, _)| idem.key),
            fp: keyed.as_ref().map(|(idem, _)| idem.fingerprint),
            reply: keyed.as_ref().map(|(_, reply)| reply.as_json()),
            reason: transaction.reason,
            tier: tier.map(|(tier, _)| tier),
            until: tier.and_then(|(_, until)| until),
        }
        .encode(out);

        let mut open: Vec<u64> = holds
            .iter()
            .filter(|hold| hold.state == HoldState::Open)
            .map(|hold| hold.id)
            .collect();
        for hold in &decision.holds {
            open.retain(|id| *id != hold.id);
            if hold.state == HoldState::Open {
                open.push(hold.id);
            }
        }
        let index = existing.map_or(self.accounts.len(), |(index, _, _)| index);
        let account = Account {
            balance: after.balance,
            last: offset,
            tier: after.tier,
            until: after.until,
            lots: Lots::from_vec(decision.lots),
            holds: open.into_boxed_slice(),
        };
        match existing {
            Some((index, _, _)) => {
                let before = std::mem::replace(&mut self.accounts[index], account);
                undo.push(Undo::Changed { index, before });
            }
            None => {
                undo.push(Undo::Opened);
                self.accounts.insert(transaction.user.into(), account);
            }
        }
        for hold in decision.holds {
            match self.holds.get_mut(&hold.id) {
                Some((_, kept)) => {
                    let before = std::mem::replace(kept, hold);
                    undo.push(Undo::HoldChanged {
                        id: before.id,
                        before,
                    });
                }
                None => {
                    undo.push(Undo::HoldMade);
                    self.holds.insert(hold.id, (transaction.user.into(), hold));
                }
            }
        }
        // Once its holds are in the map: an open one's expiry counts.
        self.index_due(index);
        self.keep_key(keyed, undo);
        self.end += line_len;
        self.next_seq += entries.len() as u64;
        Ok(Outcome::Applied(changed))
    }

    /// Keeps a change's idempotency key with the reply it got, if it has one.
    fn keep_key(&mut self, keyed: Option<(Idempotency, StoredReply)>, undo: &mut Vec<Undo>) {
        if let Some((idem, reply)) = keyed {
            undo.push(Undo::Keyed);
            self.keys.insert(
                idem.key.into(),
                KeyEntry {
                    fingerprint: idem.fingerprint.into(),
                    reply,
                },
            );
        }
    }

    /// Takes back changes that never reached the disk, newest first, and moves the journal
    /// position back to `end` / `next_seq` (where the disk copy ends).
    pub fn undo(&mut self, steps: impl Iterator<Item = Undo>, end: u64, next_seq: u64) {
        for step in steps {
            match step {
                // An account's own steps come after its holds' (they are undone newest
                // first): the holds are back as they were when its expiries are indexed again.
                Undo::Opened => {
                    self.accounts.pop();
                    self.index_due(self.accounts.len());
                }
                Undo::Changed { index, before } => {
                    self.accounts[index] = before;
                    self.index_due(index);
                }
                // In place, leaving its lot non-empty (rules::quick_charge): no lot came or
                // went, so its place in `due` is unchanged.
                Undo::Charged {
                    index,
                    lot,
                    tokens,
                    last,
                } => {
                    let account = &mut self.accounts[index];
                    account.give(LotTake { lot, tokens });
                    account.last = last;
                }
                Undo::Keyed => {
                    self.keys.pop();
                }
                Undo::HoldMade => {
                    self.holds.pop();
                }
                Undo::HoldChanged { id, before } => {
                    if let Some((_, hold)) = self.holds.get_mut(&id) {
                        *hold = before;
                    }
                }
            }
        }
        self.end = end;
        self.next_seq = next_seq;
    }

    /// Counts `len` journal bytes that change no account (a batch end line).
    pub fn skip(&mut self, len: u64) {
        self.end += len;
    }

    /// The idempotency key `key`, if it was used.
    pub fn key(&self, key: &str) -> Option<&KeyEntry> {
        self.keys.get(key)
    }

    /// Re-applies one journal line found at `offset` (`len` bytes, newline included) during
    /// recovery, once it passed the checks there (see [`super::recovery`]). Replay sets
    /// absolute values, so the lines that a checkpoint taken under load already includes
    /// leave each account as the checkpoint has it once its latest one is replayed; lots
    /// change by what each entry took, so `included` (the checkpoint's row for the account
    /// already includes this line) leaves them as they are. A line whose lots do not follow
    /// from the account's by the rules is refused ([`rules::replay_lots`]).
    pub fn redo(
        &mut self,
        record: &RecordIn,
        offset: u64,
        len: u64,
        included: bool,
    ) -> Result<(), String> {
        let account = match self.accounts.get_mut(record.user.as_ref()) {
            Some(account) => account,
            None => self
                .accounts
                .entry(record.user.as_ref().into())
                .or_insert(Account::empty(offset)),
        };
        if !included {
            let mut lots = account.lots();
            let mut open = account.open_holds(&self.holds);
            for (i, entry) in record.entries.iter().enumerate() {
                let seq = record.seq + i as u64;
                let changed = rules::replay_lots(
                    &mut lots,
                    &mut open,
                    &entry.entry(),
                    entry.recorded(),
                    seq,
                    record.time,
                )
                .map_err(|fault| format!("seq {seq}: user {:?}: {fault}", record.user))?;
                if let Some(hold) = changed {
                    self.holds
                        .insert(hold.id, (record.user.as_ref().into(), hold));
                }
            }
            lots.sort_by(rules::burn_order);
            account.lots = Lots::from_vec(lots);
            account.holds = open.iter().map(|hold| hold.id).collect();
        }
        account.balance = record.final_balance();
        account.last = offset;
        if let Some(tier) = record.tier {
            account.tier = tier;
            account.until = record.until;
        }
        if let Some(index) = self.accounts.get_index_of(record.user.as_ref()) {
            self.index_due(index);
        }
        if let (Some(key), Some(fp), Some(reply)) = (&record.key, &record.fp, record.reply) {
            self.keys.insert(
                key.as_ref().into(),
                KeyEntry {
                    fingerprint: fp.as_ref().into(),
                    reply: StoredReply::from_json(reply.to_owned()),
                },
            );
        }
        self.next_seq = record.next_seq();
        self.end = offset + len;
        Ok(())
    }
}

#[cfg(test)]
impl Ledger {
    /// An unkeyed charge for one meme `m`, at time 0.
    pub fn test_charge(
        &mut self,
        user: &str,
        cost: u64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Outcome<u64>, StoreError> {
        let request = ChargeRequest {
            user,
            cost,
            memes: &["m"],
            keyed: None,
        };
        self.charge(request, 0, out, undo)
    }

    /// An unkeyed top-up without a reason, at time 0.
    pub fn test_topup(
        &mut self,
        user: &str,
        amount: i64,
        out: &mut Vec<u8>,
        undo: &mut Vec<Undo>,
    ) -> Result<Outcome<Changed>, StoreError> {
        let change = TopupChange {
            user,
            amount,
            terms: Default::default(),
            reason: None,
            keyed: None,
        };
        self.topup(change, 0, out, undo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_BALANCE;
    use crate::store::Keyed;

    struct Harness {
        ledger: Ledger,
        journal: Vec<u8>,
        undo: Vec<Undo>,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                ledger: Ledger::new(Welcome {
                    tokens: 150,
                    expires_in: None,
                }),
                journal: Vec::new(),
                undo: Vec::new(),
            }
        }
        fn charge(&mut self, user: &str, cost: u64) -> Result<u64, StoreError> {
            match self
                .ledger
                .test_charge(user, cost, &mut self.journal, &mut self.undo)?
            {
                Outcome::Applied(balance) => Ok(balance),
                Outcome::Replayed(_) => panic!("unkeyed request replayed"),
            }
        }
        fn topup(&mut self, user: &str, amount: i64) -> Result<u64, StoreError> {
            match self
                .ledger
                .test_topup(user, amount, &mut self.journal, &mut self.undo)?
            {
                Outcome::Applied(changed) => Ok(changed.balance),
                Outcome::Replayed(_) => panic!("unkeyed request replayed"),
            }
        }
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.journal.clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    #[test]
    fn first_sight_grants_welcome_once_in_the_same_line() {
        let mut h = Harness::new();
        assert_eq!(h.charge("u1", 1), Ok(149));
        assert_eq!(h.topup("u1", -149), Ok(0));
        assert_eq!(
            h.charge("u1", 1).unwrap_err().code(),
            crate::domain::ErrorCode::InsufficientTokens
        );
        let lines = h.lines();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].contains(r#""kind":"welcome""#) && lines[0].contains(r#""kind":"charge""#)
        );
        assert!(!lines[1].contains("welcome"));
        assert_eq!(h.ledger.entries(), 3);
        assert_eq!(h.ledger.end(), h.journal.len() as u64);
    }

    #[test]
    fn refusals_change_nothing() {
        let mut h = Harness::new();
        h.topup("u1", 10).unwrap();
        let (journal, entries) = (h.journal.clone(), h.ledger.entries());
        assert!(h.topup("u1", -161).is_err());
        assert!(
            h.charge("u2", 151).is_err(),
            "a new user cannot overdraw the grant"
        );
        assert!(
            h.topup("u1", MAX_BALANCE as i64).is_err(),
            "overflow refused"
        );
        assert_eq!(h.journal, journal);
        assert_eq!(h.ledger.entries(), entries);
        assert!(
            h.ledger.account("u2").is_none(),
            "a refused first request opens nothing"
        );
        assert_eq!(h.ledger.account("u1").unwrap().balance, 160);
    }

    #[test]
    fn prev_links_chain_a_users_lines() {
        let mut h = Harness::new();
        h.charge("a", 1).unwrap();
        let first_b = h.ledger.end();
        h.charge("b", 1).unwrap();
        let second_b = h.ledger.end();
        h.charge("b", 1).unwrap();
        let lines = h.lines();
        assert!(!lines[1].contains("prev"));
        assert!(lines[2].contains(&format!(r#""prev":{first_b}"#)));
        assert_eq!(h.ledger.account("b").unwrap().last, second_b);
    }

    #[test]
    fn replays_and_conflicts_write_no_line() {
        let mut h = Harness::new();
        let keyed = |fingerprint: &'static str| Keyed {
            idem: Idempotency {
                key: "k1",
                fingerprint,
            },
            reply: Box::new(|changed: Changed| {
                StoredReply::parse(format!("{{\"b\":{}}}", changed.balance)).unwrap()
            }),
        };
        let topup = |h: &mut Harness, amount: i64, fingerprint: &'static str| {
            let change = TopupChange {
                user: "u1",
                amount,
                terms: Default::default(),
                reason: None,
                keyed: Some(keyed(fingerprint)),
            };
            h.ledger.topup(change, 0, &mut h.journal, &mut h.undo)
        };
        assert!(matches!(
            topup(&mut h, 5, "topup u1 5"),
            Ok(Outcome::Applied(Changed {
                balance: 155,
                welcome: Some(150),
                hold: None
            }))
        ));
        match topup(&mut h, 5, "topup u1 5").unwrap() {
            Outcome::Replayed(reply) => assert_eq!(reply.as_str(), r#"{"b":155}"#),
            other => panic!("expected a replay, got {other:?}"),
        }
        let err = topup(&mut h, 6, "topup u1 6").unwrap_err();
        assert_eq!(err.code(), crate::domain::ErrorCode::IdempotencyConflict);
        assert_eq!(h.ledger.account("u1").unwrap().balance, 155);
        assert_eq!(h.lines().len(), 1);
    }

    #[test]
    fn undo_restores_memory_exactly() {
        let mut h = Harness::new();
        h.topup("a", 5).unwrap();
        h.undo.clear();
        let (end, next_seq) = (h.ledger.end(), h.ledger.next_seq());
        let before = h.ledger.account("a").unwrap().clone();
        h.charge("a", 3).unwrap();
        h.charge("new", 1).unwrap();
        let change = TopupChange {
            user: "a",
            amount: 1,
            terms: Default::default(),
            reason: None,
            keyed: Some(Keyed {
                idem: Idempotency {
                    key: "k",
                    fingerprint: "f",
                },
                reply: Box::new(|_| StoredReply::parse("1".into()).unwrap()),
            }),
        };
        h.ledger
            .topup(change, 0, &mut h.journal, &mut h.undo)
            .unwrap();
        let steps: Vec<Undo> = h.undo.drain(..).rev().collect();
        h.ledger.undo(steps.into_iter(), end, next_seq);
        assert_eq!(*h.ledger.account("a").unwrap(), before);
        assert!(h.ledger.account("new").is_none());
        assert_eq!(h.ledger.keys_len(), 0);
        assert_eq!((h.ledger.end(), h.ledger.next_seq()), (end, next_seq));
    }

    /// A charge applied in place writes the journal line, and leaves the account, exactly as
    /// the full decision would: on an account of one inline lot, on one of several lots, with
    /// a key; and is undone exactly.
    #[test]
    fn a_charge_in_place_is_the_full_decision() {
        let keyed = || {
            Some(Keyed {
                idem: Idempotency {
                    key: "k",
                    fingerprint: "f",
                },
                reply: Box::new(|changed: Changed| {
                    StoredReply::parse(changed.balance.to_string()).unwrap()
                }),
            })
        };
        let mut quick = Harness::new();
        let mut full = Harness::new();
        for h in [&mut quick, &mut full] {
            h.charge("one", 1).unwrap();
            h.topup("many", 5).unwrap();
            h.undo.clear();
        }
        let (end, next_seq) = (quick.ledger.end(), quick.ledger.next_seq());
        let before: Vec<Account> = ["one", "many"]
            .map(|user| quick.ledger.account(user).unwrap().clone())
            .into();
        for (user, key) in [("one", None), ("many", None), ("many", keyed())] {
            let charge = |keyed| ChargeRequest {
                user,
                cost: 2,
                memes: &["m"],
                keyed,
            };
            let undone = quick.undo.len();
            let applied = quick
                .ledger
                .charge(charge(key), 7, &mut quick.journal, &mut quick.undo)
                .unwrap();
            assert!(
                matches!(quick.undo[undone..], [Undo::Charged { .. }, ..]),
                "{user}: charged in place"
            );
            let key = if quick.undo.len() > undone + 1 {
                keyed()
            } else {
                None
            };
            let transaction = Transaction {
                user,
                hold: None,
                what: What::Change(Change::Charge { cost: 2 }),
                memes: &["m"],
                reason: None,
                keyed: key,
            };
            let decided = full
                .ledger
                .transact(transaction, 7, &mut full.journal, &mut full.undo)
                .unwrap();
            let (Outcome::Applied(balance), Outcome::Applied(changed)) = (applied, decided) else {
                panic!("{user}: both applied");
            };
            assert_eq!(balance, changed.balance);
            assert_eq!(quick.ledger.account(user), full.ledger.account(user));
        }
        assert_eq!(quick.lines(), full.lines());
        assert_eq!(
            (quick.ledger.end(), quick.ledger.next_seq()),
            (full.ledger.end(), full.ledger.next_seq())
        );
        let steps: Vec<Undo> = quick.undo.drain(..).rev().collect();
        quick.ledger.undo(steps.into_iter(), end, next_seq);
        for (user, before) in ["one", "many"].into_iter().zip(before) {
            assert_eq!(*quick.ledger.account(user).unwrap(), before);
        }
        assert_eq!(quick.ledger.keys_len(), 0);
    }

    #[test]
    fn the_due_index_follows_changes_and_their_undo() {
        let mut h = Harness::new();
        h.topup("a", 5).unwrap();
        assert!(
            h.ledger.due(i64::MAX, 10).is_empty(),
            "nothing ever expires"
        );
        h.undo.clear();
        let (end, next_seq) = (h.ledger.end(), h.ledger.next_seq());
        let expiring = TopupChange {
            user: "a",
            amount: 3,
            terms: crate::domain::LotTerms {
                expires_at: Some(100),
                ..Default::default()
            },
            reason: None,
            keyed: None,
        };
        h.ledger
            .topup(expiring, 0, &mut h.journal, &mut h.undo)
            .unwrap();
        let held = HoldChange {
            user: "b",
            amount: 1,
            ttl_ms: 50,
            keyed: None,
        };
        h.ledger.hold(held, 0, &mut h.journal, &mut h.undo).unwrap();
        let due = |h: &Harness, now| -> Vec<String> {
            h.ledger
                .due(now, 10)
                .into_iter()
                .map(String::from)
                .collect()
        };
        assert!(due(&h, 49).is_empty());
        assert_eq!(due(&h, 50), ["b"]);
        assert_eq!(due(&h, 100), ["b", "a"], "the longest due first");
        // A charge in place (from the expiring lot, which it leaves non-empty) moves nothing.
        let undone = h.undo.len();
        h.charge("a", 1).unwrap();
        assert!(matches!(h.undo[undone..], [Undo::Charged { .. }]));
        assert_eq!(due(&h, 100), ["b", "a"]);
        // Taken back (the journal could not be written): nothing of them is due.
        let steps: Vec<Undo> = h.undo.drain(..).rev().collect();
        h.ledger.undo(steps.into_iter(), end, next_seq);
        assert!(due(&h, i64::MAX).is_empty());
        let again = HoldChange {
            user: "a",
            amount: 1,
            ttl_ms: 50,
            keyed: None,
        };
        h.ledger
            .hold(again, 0, &mut h.journal, &mut h.undo)
            .unwrap();
        assert_eq!(due(&h, 50), ["a"]);
        let written = h.ledger.settle("a", 60, &mut h.journal, &mut h.undo);
        assert_eq!(written, Ok(1), "the release");
        assert!(due(&h, i64::MAX).is_empty());
        let lines = h.lines().len();
        assert_eq!(h.ledger.settle("a", 70, &mut h.journal, &mut h.undo), Ok(0));
        assert_eq!(h.lines().len(), lines, "nothing due: no line");
    }

    #[test]
    fn redo_rebuilds_the_same_state() {
        let mut h = Harness::new();
        h.charge("a", 1).unwrap();
        h.topup("b", 7).unwrap();
        h.ledger
            .entitle("a", Tier::Premium, Some(99), 0, &mut h.journal, &mut h.undo)
            .unwrap();
        h.charge("b", 2).unwrap();
        let mut replayed = Ledger::new(h.ledger.welcome);
        let mut offset = 0u64;
        for line in h.journal.split_inclusive(|b| *b == b'\n') {
            let record = RecordIn::parse(&line[..line.len() - 1]).unwrap();
            replayed
                .redo(&record, offset, line.len() as u64, false)
                .unwrap();
            offset += line.len() as u64;
        }
        for user in ["a", "b"] {
            assert_eq!(replayed.account(user), h.ledger.account(user));
        }
        assert_eq!(replayed.end(), h.ledger.end());
        assert_eq!(replayed.next_seq(), h.ledger.next_seq());
    }
}
