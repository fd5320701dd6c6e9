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

use super::StoreError;
use crate::domain::{AccountView, Entry, EntryKind, MAX_BALANCE, Tier};
use crate::protocol::{Op, canonical};

/// A change a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Tokens spent on delivered memes.
    Charge { cost: u64 },
    /// Tokens added (`amount` > 0) or deducted (`amount` < 0).
    Topup { amount: i64 },
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
        None if matches!(change, Change::Topup { amount } if amount < 0) => {
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
        Change::Topup { amount } if amount < 0 => (EntryKind::Deduct, amount as i128),
        Change::Topup { amount } => (EntryKind::Topup, amount as i128),
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
        EntryKind::Deduct => entry.delta < 0,
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
            decide("ghost", None, Change::Topup { amount: -5 }, 150),
            Err(StoreError::UnknownUser("ghost".into()))
        );
        assert!(
            decide("ghost", None, Change::Topup { amount: 5 }, 150)
                .unwrap()
                .opens
        );
    }

    #[test]
    fn an_existing_account_gets_no_second_grant() {
        let decision = decide("u", Some(&account(10)), Change::Topup { amount: 5 }, 150).unwrap();
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
        let exact = decide("u", Some(&account(3)), Change::Topup { amount: -3 }, 150).unwrap();
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
            Change::Topup { amount: 1 },
            150,
        )
        .unwrap();
        assert_eq!(at_max.after.balance, MAX_BALANCE);
        assert_eq!(
            decide(
                "u",
                Some(&account(MAX_BALANCE)),
                Change::Topup { amount: 1 },
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
