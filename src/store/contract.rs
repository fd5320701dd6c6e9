//! The store contract: what every [`TokenStore`] must do, as tests written against the trait
//! alone. Each store runs the whole suite; adding a store is one line at the bottom of this
//! file (`contract_suite!(name, subject)`) plus a [`Subject`] that opens it.
//!
//! The suite checks the rules of the money through the store (welcome once, never below
//! zero or above the maximum, refusals change nothing, keys replay or conflict), durability
//! across a clean close and a reopen, history paging with opaque cursors, concurrent changes
//! (no lost update; racers on a small balance get exactly what serial execution gives), the
//! audit, and a model-based property test: random operations and reopenings, compared after
//! every step with a plain model of the rules.

use super::{
    Changed, ChargeRequest, Idempotency, Keyed, Outcome, StoreError, StoredReply, TokenStore,
    TopupChange,
};
use crate::domain::{EntryKind, ErrorCode, HistoryCursor, MAX_BALANCE, Tier};
use proptest::prelude::*;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// Tokens every store in the suite grants a new account.
pub const WELCOME: u64 = 150;

/// A kind of store under test: where its ledgers live and how to open one.
#[async_trait::async_trait]
pub trait Subject: Send + Sync + 'static {
    /// Where one ledger lives (a directory, a database). Dropping it removes the ledger.
    type Place: Send + Sync;
    type Store: TokenStore;
    /// A new, empty place.
    async fn place(&self) -> Self::Place;
    /// Opens the ledger at `place`, granting [`WELCOME`] tokens to new accounts.
    async fn open(&self, place: &Self::Place) -> Arc<Self::Store> {
        self.open_with(place, super::Clock::system(), None).await
    }
    /// Opens the ledger at `place` with `clock`, the welcome grant's lot expiring after
    /// `welcome_expires` if given.
    async fn open_with(
        &self,
        place: &Self::Place,
        clock: super::Clock,
        welcome_expires: Option<std::time::Duration>,
    ) -> Arc<Self::Store>;
    /// Closes a store the way the daemon does at shutdown ([`TokenStore::close`], inside the
    /// runtime), then drops it: the last reference, so that its ledger may be reopened.
    async fn close(&self, store: Arc<Self::Store>) {
        TokenStore::close(&*store).await.expect("a clean close");
        assert!(Arc::into_inner(store).is_some(), "the last reference");
    }
}

/// Runs one contract test on a fresh runtime.
pub fn run<S: Subject, F: Future<Output = ()>>(subject: S, test: impl FnOnce(Arc<S>) -> F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(test(Arc::new(subject)));
}

async fn charge(store: &dyn TokenStore, user: &str, cost: u64) -> Result<u64, StoreError> {
    let request = ChargeRequest {
        user,
        cost,
        memes: &["grumpy-cat"],
        keyed: None,
    };
    let (outcome, commit) = store.charge(request).await?;
    commit.wait().await?;
    match outcome {
        Outcome::Applied(balance) => Ok(balance),
        Outcome::Replayed(_) => panic!("an unkeyed charge was replayed"),
    }
}

async fn topup(store: &dyn TokenStore, user: &str, amount: i64) -> Result<u64, StoreError> {
    topup_changed(store, user, amount)
        .await
        .map(|changed| changed.balance)
}

/// An unkeyed top-up; the balance after it and the welcome grant it recorded, if any.
async fn topup_changed(
    store: &dyn TokenStore,
    user: &str,
    amount: i64,
) -> Result<Changed, StoreError> {
    let change = TopupChange {
        user,
        amount,
        terms: Default::default(),
        reason: Some("contract"),
        keyed: None,
    };
    let (outcome, commit) = store.topup(change).await?;
    commit.wait().await?;
    match outcome {
        Outcome::Applied(changed) => Ok(changed),
        Outcome::Replayed(_) => panic!("an unkeyed top-up was replayed"),
    }
}

/// A keyed top-up whose stored reply is `{"new_balance":N}` (with `"welcome_grant":W` when
/// it opened the account); the reply it got.
async fn keyed_topup(
    store: &dyn TokenStore,
    user: &str,
    amount: i64,
    key: &str,
) -> Result<(String, bool), StoreError> {
    let fingerprint = format!("topup {user} {amount}");
    let build = |changed: Changed| {
        let reply = match changed.welcome {
            Some(grant) => {
                serde_json::json!({ "new_balance": changed.balance, "welcome_grant": grant })
            }
            None => serde_json::json!({ "new_balance": changed.balance }),
        };
        StoredReply::record(&reply)
    };
    let change = TopupChange {
        user,
        amount,
        terms: Default::default(),
        reason: None,
        keyed: Some(Keyed {
            idem: Idempotency {
                key,
                fingerprint: &fingerprint,
            },
            reply: Box::new(build),
        }),
    };
    let (outcome, commit) = store.topup(change).await?;
    commit.wait().await?;
    Ok(match outcome {
        Outcome::Applied(balance) => (build(balance).as_str().to_string(), false),
        Outcome::Replayed(reply) => (reply.as_str().to_string(), true),
    })
}

async fn balance(store: &dyn TokenStore, user: &str) -> Option<u64> {
    match store.account(user).await {
        Ok((account, commit)) => {
            commit.wait().await.expect("durable");
            Some(account.balance)
        }
        Err(StoreError::UnknownUser(_)) => None,
        Err(error) => panic!("reading {user:?}: {error}"),
    }
}

async fn entries(store: &dyn TokenStore) -> u64 {
    store.stats().await.expect("stats").entries
}

/// A user's whole history, following the cursors page by page (`page` entries at a time).
async fn whole_history(
    store: &dyn TokenStore,
    user: &str,
    page: usize,
) -> Vec<crate::domain::HistoryEntry> {
    let mut pages = Vec::new();
    let mut before: Option<HistoryCursor> = None;
    loop {
        let got = store
            .history(user, page, before.as_ref())
            .await
            .expect("history");
        assert!(got.entries.len() <= page);
        pages.push(got.entries);
        match got.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    pages.into_iter().rev().flatten().collect()
}

pub async fn welcome_is_granted_once_with_the_first_change<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    assert_eq!(balance(&*store, "u1").await, None);
    assert_eq!(charge(&*store, "u1", 1).await, Ok(WELCOME - 1));
    assert_eq!(charge(&*store, "u1", 1).await, Ok(WELCOME - 2));
    // A top-up that opens the account says the grant is part of its balance; later ones,
    // and top-ups of accounts opened otherwise, do not.
    let opened = Changed {
        balance: WELCOME + 5,
        welcome: Some(WELCOME),
        hold: None,
    };
    assert_eq!(topup_changed(&*store, "u2", 5).await, Ok(opened));
    assert_eq!(
        topup_changed(&*store, "u2", 1).await,
        Ok(Changed {
            balance: WELCOME + 6,
            welcome: None,
            hold: None
        })
    );
    assert_eq!(
        topup_changed(&*store, "u1", 2).await,
        Ok(Changed {
            balance: WELCOME,
            welcome: None,
            hold: None
        })
    );
    let history = whole_history(&*store, "u1", 100).await;
    let kinds: Vec<_> = history
        .iter()
        .map(|e| (e.kind, e.delta, e.balance))
        .collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::Welcome, WELCOME as i64, WELCOME),
            (EntryKind::Charge, -1, WELCOME - 1),
            (EntryKind::Charge, -1, WELCOME - 2),
            (EntryKind::Topup, 2, WELCOME),
        ]
    );
    assert_eq!(
        history[0].time, history[1].time,
        "the grant is recorded with the change that opened the account"
    );
    assert_eq!(history[1].memes, ["grumpy-cat"]);
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.accounts, stats.entries), (2, 7));
    assert!(stats.writable);
    let health = store.health().await;
    assert_eq!((health.accounts, health.writable), (2, true));
}

pub async fn refusals_change_nothing<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    topup(&*store, "u", 10).await.unwrap();
    let before = entries(&*store).await;
    assert_eq!(
        charge(&*store, "u", WELCOME + 11).await,
        Err(StoreError::InsufficientTokens {
            user: "u".into(),
            balance: WELCOME + 10,
            needed: WELCOME + 11
        })
    );
    assert_eq!(
        topup(&*store, "u", -(WELCOME as i64) - 11)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InsufficientTokens
    );
    assert_eq!(
        charge(&*store, "new", WELCOME + 1)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InsufficientTokens,
        "a new user cannot overdraw the grant"
    );
    assert_eq!(
        balance(&*store, "new").await,
        None,
        "a refused first change opens nothing"
    );
    assert_eq!(
        topup(&*store, "u", MAX_BALANCE as i64).await,
        Err(StoreError::BalanceOverflow)
    );
    assert_eq!(balance(&*store, "u").await, Some(WELCOME + 10));
    assert_eq!(entries(&*store).await, before);
    assert_eq!(whole_history(&*store, "u", 10).await.len(), 2);
    assert_eq!(
        charge(&*store, "u", WELCOME + 10).await,
        Ok(0),
        "down to exactly zero"
    );
    assert_eq!(
        charge(&*store, "u", 1).await.unwrap_err().code(),
        ErrorCode::InsufficientTokens
    );
}

pub async fn keys_replay_their_request_and_refuse_others<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    let first = keyed_topup(&*store, "u", 7, "evt_1").await.unwrap();
    assert_eq!(
        first,
        (
            format!(
                r#"{{"new_balance":{},"welcome_grant":{WELCOME}}}"#,
                WELCOME + 7
            ),
            false
        ),
        "the top-up opened the account: its reply says the grant is included"
    );
    topup(&*store, "u", 1).await.unwrap();
    let again = keyed_topup(&*store, "u", 7, "evt_1").await.unwrap();
    assert_eq!(
        again,
        (first.0.clone(), true),
        "the reply as it was then, grant and all, though the account exists now"
    );
    assert_eq!(
        balance(&*store, "u").await,
        Some(WELCOME + 8),
        "a replay changes nothing"
    );
    let fingerprint = "topup u 7";
    let (stored, commit) = store
        .replay(Idempotency {
            key: "evt_1",
            fingerprint,
        })
        .await
        .unwrap()
        .expect("stored");
    commit.wait().await.unwrap();
    assert_eq!(stored.as_str(), first.0);
    assert!(
        store
            .replay(Idempotency {
                key: "evt_2",
                fingerprint
            })
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        keyed_topup(&*store, "u", 8, "evt_1").await.unwrap_err(),
        StoreError::IdempotencyConflict {
            key: "evt_1".into()
        }
    );
    assert_eq!(
        keyed_topup(&*store, "other", 7, "evt_1")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::IdempotencyConflict
    );
    assert_eq!(balance(&*store, "other").await, None);
    // Only an applied change consumes its key: a refused one can be retried later.
    assert_eq!(
        keyed_topup(&*store, "u", -1000, "evt_3")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InsufficientTokens
    );
    topup(&*store, "u", 1000).await.unwrap();
    let (_, replayed) = keyed_topup(&*store, "u", -1000, "evt_3").await.unwrap();
    assert!(!replayed, "applied now");
}

/// A keyed change as the service makes it: `fingerprint` is its canonical request, its
/// stored reply `{"balance":N}`; the reply it got and whether it was replayed.
async fn owned_change(
    store: &dyn TokenStore,
    key: &str,
    user: &str,
    amount: i64,
    fingerprint: &str,
) -> Result<(String, bool), StoreError> {
    let build = |balance: u64| StoredReply::record(&serde_json::json!({ "balance": balance }));
    let keyed = Some(Keyed {
        idem: Idempotency { key, fingerprint },
        reply: Box::new(move |changed: Changed| build(changed.balance)),
    });
    let (outcome, commit) = match amount < 0 {
        true => {
            let memes = ["grumpy-cat"];
            let request = ChargeRequest {
                user,
                cost: amount.unsigned_abs(),
                memes: &memes,
                keyed,
            };
            store.charge(request).await?
        }
        false => {
            let change = TopupChange {
                user,
                amount,
                terms: Default::default(),
                reason: None,
                keyed,
            };
            let (outcome, commit) = store.topup(change).await?;
            (outcome.map(|changed| changed.balance), commit)
        }
    };
    commit.wait().await?;
    Ok(match outcome {
        Outcome::Applied(balance) => (build(balance).as_str().to_string(), false),
        Outcome::Replayed(reply) => (reply.as_str().to_string(), true),
    })
}

pub async fn keys_belong_to_their_owner<S: Subject>(subject: Arc<S>) {
    use super::rules::{KeyOwner, scoped_key};
    let place = subject.place().await;
    let store = subject.open(&place).await;
    let get = |user: &str| format!(r#"{{"op":"get","user":"{user}"}}"#);
    let topup =
        |user: &str, amount: i64| format!(r#"{{"op":"topup","user":"{user}","amount":{amount}}}"#);
    let alice = scoped_key(KeyOwner::User("alice"), "req-1");
    let bob = scoped_key(KeyOwner::User("bob"), "req-1");
    let mallory = scoped_key(KeyOwner::User("mallory"), "evt_1001");
    let webhook = scoped_key(KeyOwner::Webhook, "evt_1001");
    let admins = scoped_key(KeyOwner::Admins, "evt_1001");
    // The same key from different owners: each applies, none is a conflict.
    let (first, replayed) = owned_change(&*store, &alice, "alice", -1, &get("alice"))
        .await
        .unwrap();
    assert!(!replayed);
    assert!(
        !owned_change(&*store, &bob, "bob", -1, &get("bob"))
            .await
            .unwrap()
            .1
    );
    assert!(
        !owned_change(&*store, &mallory, "mallory", -1, &get("mallory"))
            .await
            .unwrap()
            .1
    );
    let paid = topup("victim", 500);
    assert!(
        !owned_change(&*store, &webhook, "victim", 500, &paid)
            .await
            .unwrap()
            .1
    );
    assert!(
        !owned_change(&*store, &admins, "victim", 500, &paid)
            .await
            .unwrap()
            .1
    );
    assert_eq!(balance(&*store, "victim").await, Some(WELCOME + 1000));
    // The same owner again replays, also after a reopen, and another request conflicts.
    subject.close(store).await;
    let store = subject.open(&place).await;
    let again = owned_change(&*store, &alice, "alice", -1, &get("alice")).await;
    assert_eq!(again.unwrap(), (first, true));
    assert_eq!(
        owned_change(&*store, &alice, "alice", -2, &format!("{} 2", get("alice")))
            .await
            .unwrap_err(),
        StoreError::IdempotencyConflict {
            key: "req-1".into()
        },
        "the conflict names the key as its owner sent it"
    );
    assert!(
        owned_change(&*store, &webhook, "victim", 500, &paid)
            .await
            .unwrap()
            .1
    );
    assert_eq!(balance(&*store, "alice").await, Some(WELCOME - 1));
    assert_eq!(balance(&*store, "victim").await, Some(WELCOME + 1000));
    // History shows each key as its owner sent it.
    let keys: Vec<_> = whole_history(&*store, "victim", 10)
        .await
        .into_iter()
        .filter_map(|entry| entry.key)
        .collect();
    assert_eq!(keys, ["evt_1001", "evt_1001"]);
    let report = store.audit().await.unwrap();
    assert!(report.ok, "{report:?}");
    subject.close(store).await;
}

pub async fn keys_recorded_before_scoping_stay_their_recorders<S: Subject>(subject: Arc<S>) {
    use super::rules::{KeyOwner, scoped_key};
    let place = subject.place().await;
    let store = subject.open(&place).await;
    let get = r#"{"op":"get","user":"alice","query":"cats"}"#;
    let paid = r#"{"op":"topup","user":"alice","amount":9}"#;
    // A ledger written before keys were scoped stored them bare.
    let (charged, _) = owned_change(&*store, "old-1", "alice", -1, get)
        .await
        .unwrap();
    let (topped, _) = owned_change(&*store, "evt_9", "alice", 9, paid)
        .await
        .unwrap();
    subject.close(store).await;
    let store = subject.open(&place).await;
    let alice = scoped_key(KeyOwner::User("alice"), "old-1");
    assert_eq!(
        owned_change(&*store, &alice, "alice", -1, get)
            .await
            .unwrap(),
        (charged, true),
        "the user who recorded it retries: replayed"
    );
    assert_eq!(
        owned_change(
            &*store,
            &alice,
            "alice",
            -3,
            r#"{"op":"get","user":"alice"}"#
        )
        .await
        .unwrap_err()
        .code(),
        ErrorCode::IdempotencyConflict
    );
    let bob = scoped_key(KeyOwner::User("bob"), "old-1");
    assert!(
        !owned_change(&*store, &bob, "bob", -1, r#"{"op":"get","user":"bob"}"#)
            .await
            .unwrap()
            .1,
        "another user's key of the same name is their own"
    );
    let webhook = scoped_key(KeyOwner::Webhook, "evt_9");
    assert_eq!(
        owned_change(&*store, &webhook, "alice", 9, paid)
            .await
            .unwrap(),
        (topped, true)
    );
    let mallory = scoped_key(KeyOwner::User("mallory"), "evt_9");
    assert!(
        !owned_change(
            &*store,
            &mallory,
            "mallory",
            -1,
            r#"{"op":"get","user":"mallory"}"#
        )
        .await
        .unwrap()
        .1
    );
    assert_eq!(balance(&*store, "alice").await, Some(WELCOME - 1 + 9));
    let report = store.audit().await.unwrap();
    assert!(report.ok, "{report:?}");
    subject.close(store).await;
}

/// A `get` reply as memesd stored it before stored replies were typed (recorded by that
/// memesd: `get` for u1 with a key, a query and a place; `tests/it/ledger.rs` replays the
/// journal it wrote).
pub const RECORDED_GET: &str = concat!(
    r#"{"user_id":"u1","meme":{"id":"bode","title":"Bode","#,
    r#""image":"https://i.kym-cdn.com/photos/images/newsfeed/001/195/668/4ac.png","#,
    r#""source":"https://knowyourmeme.com/memes/bode"},"charged":1,"balance":149,"#,
    r#""location":{"country_code":"FR","country":"France","city":"Paris","#,
    r#""region":"Ile-de-France","distance_km":0.4}}"#
);

/// A reply stored as an earlier memesd stored it replays byte for byte: after a reopen,
/// through a retry and through [`TokenStore::replay`], and marked as a replay with every
/// stored byte kept (a float's last digit included, whatever its typed view reads).
pub async fn replies_stored_earlier_replay_byte_for_byte<S: Subject>(subject: Arc<S>) {
    use crate::protocol::{GetData, MemeView};
    let place = subject.place().await;
    let store = subject.open(&place).await;
    let idem = Idempotency {
        key: "u1\u{1f}req-1",
        fingerprint: r#"{"op":"get","user":"u1"}"#,
    };
    let charge = || ChargeRequest {
        user: "u1",
        cost: 1,
        memes: &["grumpy-cat"],
        keyed: Some(Keyed {
            idem,
            reply: Box::new(|_| StoredReply::parse(RECORDED_GET.into()).expect("JSON")),
        }),
    };
    let (outcome, commit) = store.charge(charge()).await.unwrap();
    commit.wait().await.unwrap();
    assert!(matches!(outcome, Outcome::Applied(_)), "{outcome:?}");
    subject.close(store).await;

    let store = subject.open(&place).await;
    let (outcome, commit) = store.charge(charge()).await.unwrap();
    commit.wait().await.unwrap();
    let retried = match outcome {
        Outcome::Replayed(retried) => retried,
        applied => panic!("a retry is replayed: {applied:?}"),
    };
    assert_eq!(retried.as_str(), RECORDED_GET);
    let (stored, _) = store.replay(idem).await.unwrap().expect("stored");
    assert_eq!(stored.as_str(), RECORDED_GET);
    let replayed = stored.replay::<GetData<MemeView>>().unwrap();
    let body = RECORDED_GET.strip_suffix('}').unwrap();
    assert_eq!(
        serde_json::to_string(&replayed).unwrap(),
        format!("{body},\"replayed\":true}}")
    );
    assert_eq!(
        balance(&*store, "u1").await,
        Some(WELCOME - 1),
        "charged once"
    );
    subject.close(store).await;
}

pub async fn entitlements_set_the_tier<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    let (account, commit) = store
        .entitle("p", Tier::Premium, Some(4_000_000_000_000))
        .await
        .unwrap();
    commit.wait().await.unwrap();
    assert_eq!(
        (account.balance, account.tier, account.until),
        (WELCOME, Tier::Premium, Some(4_000_000_000_000)),
        "opens the account with its grant"
    );
    let (account, _) = store.account("p").await.unwrap();
    assert_eq!(account.tier, Tier::Premium);
    let (account, commit) = store.entitle("p", Tier::Free, None).await.unwrap();
    commit.wait().await.unwrap();
    assert_eq!((account.tier, account.until), (Tier::Free, None));
    let history = whole_history(&*store, "p", 10).await;
    let entitle = history.last().unwrap();
    assert_eq!((entitle.kind, entitle.delta), (EntryKind::Entitle, 0));
    assert_eq!(history[1].tier, Some(Tier::Premium));
}

pub async fn history_pages_add_up_and_cursors_are_checked<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    for i in 0..23 {
        topup(&*store, "h", 1 + i).await.unwrap();
        topup(&*store, "other", 1).await.unwrap();
    }
    let all = whole_history(&*store, "h", 1000).await;
    assert_eq!(all.len(), 24);
    for page in [1, 2, 5, 23, 24, 25] {
        assert_eq!(
            whole_history(&*store, "h", page).await,
            all,
            "pages of {page}"
        );
    }
    let newest = store.history("h", 3, None).await.unwrap();
    assert_eq!(newest.entries, all[21..]);
    let next = newest.next.expect("older entries remain");
    assert_eq!(
        store
            .history("other", 3, Some(&next))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidArgument,
        "a cursor of another user's history"
    );
    for forged in ["", "garbage", "1:2:3", "99999999:1", "-1:5"] {
        assert_eq!(
            store
                .history("h", 3, Some(&HistoryCursor::from_client(forged)))
                .await
                .unwrap_err()
                .code(),
            ErrorCode::InvalidArgument,
            "{forged:?}"
        );
    }
    assert_eq!(
        store.history("nobody", 3, None).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

pub async fn a_reopened_store_keeps_everything<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    charge(&*store, "u1", 1).await.unwrap();
    topup(&*store, "u1", 50).await.unwrap();
    let keyed = keyed_topup(&*store, "u2", 7, "k1").await.unwrap();
    store
        .entitle("u1", Tier::Premium, Some(4_000_000_000_000))
        .await
        .unwrap()
        .1
        .wait()
        .await
        .unwrap();
    let history = whole_history(&*store, "u1", 100).await;
    subject.close(store).await;

    let store = subject.open(&place).await;
    assert_eq!(balance(&*store, "u1").await, Some(WELCOME + 49));
    assert_eq!(store.account("u1").await.unwrap().0.tier, Tier::Premium);
    assert_eq!(whole_history(&*store, "u1", 2).await, history);
    assert_eq!(
        keyed_topup(&*store, "u2", 7, "k1").await.unwrap(),
        (keyed.0, true),
        "keys survive a restart"
    );
    assert_eq!(balance(&*store, "u2").await, Some(WELCOME + 7));
    assert_eq!(
        charge(&*store, "u2", 1).await,
        Ok(WELCOME + 6),
        "no second welcome"
    );
    let report = store.audit().await.unwrap();
    assert!(report.ok, "{:?}", report.discrepancy);
    assert_eq!((report.accounts, report.keys, report.welcomes), (2, 1, 2));
}

pub async fn concurrent_changes_lose_no_update<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    topup(&*store, "shared", 1).await.unwrap();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    topup(&*store, "shared", 1).await.unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(balance(&*store, "shared").await, Some(WELCOME + 801));
    assert!(store.audit().await.unwrap().ok);
}

pub async fn racers_on_a_small_balance_get_exactly_what_it_pays_for<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    charge(&*store, "racy", WELCOME - 10).await.unwrap();
    let racers: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { charge(&*store, "racy", 1).await })
        })
        .collect();
    let mut delivered = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => delivered += 1,
            Err(error) => assert_eq!(error.code(), ErrorCode::InsufficientTokens),
        }
    }
    assert_eq!(delivered, 10);
    assert_eq!(balance(&*store, "racy").await, Some(0));
}

pub async fn concurrent_retries_of_one_key_apply_it_once<S: Subject>(subject: Arc<S>) {
    let place = subject.place().await;
    let store = subject.open(&place).await;
    topup(&*store, "k", 1).await.unwrap();
    // A client that lost its reply retries on every connection at once (a store that
    // batches sees them in one transaction; one applies, every other replays its reply).
    let retries: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { keyed_topup(&*store, "k", 7, "retry").await })
        })
        .collect();
    let mut replies = Vec::new();
    for retry in retries {
        replies.push(retry.await.unwrap().expect("applied or replayed"));
    }
    assert_eq!(replies.iter().filter(|(_, replayed)| !replayed).count(), 1);
    assert!(replies.iter().all(|(reply, _)| *reply == replies[0].0));
    assert_eq!(balance(&*store, "k").await, Some(WELCOME + 8));
    assert!(store.audit().await.unwrap().ok);
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    Charge { user: u8, cost: u64 },
    Topup { user: u8, amount: i64 },
    KeyedTopup { user: u8, amount: i64, key: u8 },
    Reopen { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5, 0u64..120).prop_map(|(user, cost)| Op::Charge { user, cost }),
        3 => (0u8..5, -200i64..200)
            .prop_filter("non-zero", |(_, a)| *a != 0)
            .prop_map(|(user, amount)| Op::Topup { user, amount }),
        2 => (0u8..5, -50i64..50, 0u8..4)
            .prop_filter("non-zero", |(_, a, _)| *a != 0)
            .prop_map(|(user, amount, key)| Op::KeyedTopup { user, amount, key }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// The rules of the money, as simply as they can be written.
#[derive(Default)]
struct Model {
    balances: HashMap<String, u64>,
    keys: HashMap<String, (String, u64)>,
}

impl Model {
    fn charge(&mut self, user: &str, cost: u64) -> Result<u64, ErrorCode> {
        self.change(user, -(cost as i64))
    }

    /// A top-up (`amount` > 0) or deduction: a deduction never opens an account.
    fn topup(&mut self, user: &str, amount: i64) -> Result<u64, ErrorCode> {
        if amount < 0 && !self.balances.contains_key(user) {
            return Err(ErrorCode::NotFound);
        }
        self.change(user, amount)
    }

    fn change(&mut self, user: &str, delta: i64) -> Result<u64, ErrorCode> {
        let before = self.balances.get(user).copied().unwrap_or(WELCOME) as i64;
        let after = before + delta;
        if after < 0 {
            return Err(ErrorCode::InsufficientTokens);
        }
        self.balances.insert(user.to_string(), after as u64);
        Ok(after as u64)
    }
}

/// Runs `case` on `cases` random lists of steps (`steps`), one runtime for all; a failure
/// panics with the smallest list that still fails.
pub fn property<S: Subject, T: std::fmt::Debug, F: Future<Output = Result<(), TestCaseError>>>(
    subject: S,
    cases: u32,
    steps: impl Strategy<Value = Vec<T>>,
    case: impl Fn(Arc<S>, Vec<T>) -> F,
) {
    let subject = Arc::new(subject);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(failure) = runner.run(&steps, |ops| runtime.block_on(case(subject.clone(), ops))) {
        panic!("{failure}");
    }
}

/// Random operations and reopenings agree, step by step, with [`Model`].
pub fn agrees_with_a_simple_model<S: Subject>(subject: S, cases: u32) {
    let steps = proptest::collection::vec(op(), 1..60);
    property(subject, cases, steps, model_case);
}

async fn model_case<S: Subject>(subject: Arc<S>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let place = subject.place().await;
    let mut store = subject.open(&place).await;
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Charge { user, cost } => {
                let user = format!("u{user}");
                let got = charge(&*store, &user, cost).await.map_err(|e| e.code());
                prop_assert_eq!(got, model.charge(&user, cost));
            }
            Op::Topup { user, amount } => {
                let user = format!("u{user}");
                let got = topup(&*store, &user, amount).await.map_err(|e| e.code());
                prop_assert_eq!(got, model.topup(&user, amount));
            }
            Op::KeyedTopup { user, amount, key } => {
                let user = format!("u{user}");
                let key = format!("k{key}");
                let fingerprint = format!("topup {user} {amount}");
                let expected = match model.keys.get(&key) {
                    Some((fp, balance)) if *fp == fingerprint => Ok(*balance),
                    Some(_) => Err(ErrorCode::IdempotencyConflict),
                    None => model.topup(&user, amount).inspect(|balance| {
                        model
                            .keys
                            .insert(key.clone(), (fingerprint.clone(), *balance));
                    }),
                };
                let got = keyed_topup(&*store, &user, amount, &key)
                    .await
                    .map(|(reply, _)| {
                        serde_json::from_str::<serde_json::Value>(&reply).unwrap()["new_balance"]
                            .as_u64()
                            .unwrap()
                    })
                    .map_err(|e| e.code());
                prop_assert_eq!(got, expected);
            }
            Op::Reopen { clean } => {
                if clean {
                    subject.close(store).await;
                } else {
                    drop(store);
                }
                store = subject.open(&place).await;
            }
        }
        for (user, expected) in &model.balances {
            prop_assert_eq!(balance(&*store, user).await, Some(*expected));
        }
        prop_assert_eq!(
            store.stats().await.unwrap().accounts,
            model.balances.len() as u64
        );
    }
    let report = store.audit().await.unwrap();
    prop_assert!(report.ok, "{:?}", report.discrepancy);
    Ok(())
}

/// Runs every contract test against one kind of store, as a module of tests named `$name`.
macro_rules! contract_suite {
    ($name:ident, $subject:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn welcome_is_granted_once_with_the_first_change() {
                run(
                    $subject,
                    super::welcome_is_granted_once_with_the_first_change,
                );
            }
            #[test]
            fn refusals_change_nothing() {
                run($subject, super::refusals_change_nothing);
            }
            #[test]
            fn keys_replay_their_request_and_refuse_others() {
                run($subject, super::keys_replay_their_request_and_refuse_others);
            }
            #[test]
            fn keys_belong_to_their_owner() {
                run($subject, super::keys_belong_to_their_owner);
            }
            #[test]
            fn keys_recorded_before_scoping_stay_their_recorders() {
                run(
                    $subject,
                    super::keys_recorded_before_scoping_stay_their_recorders,
                );
            }
            #[test]
            fn replies_stored_earlier_replay_byte_for_byte() {
                run($subject, super::replies_stored_earlier_replay_byte_for_byte);
            }
            #[test]
            fn entitlements_set_the_tier() {
                run($subject, super::entitlements_set_the_tier);
            }
            #[test]
            fn history_pages_add_up_and_cursors_are_checked() {
                run(
                    $subject,
                    super::history_pages_add_up_and_cursors_are_checked,
                );
            }
            #[test]
            fn a_reopened_store_keeps_everything() {
                run($subject, super::a_reopened_store_keeps_everything);
            }
            #[test]
            fn concurrent_changes_lose_no_update() {
                run($subject, super::concurrent_changes_lose_no_update);
            }
            #[test]
            fn racers_on_a_small_balance_get_exactly_what_it_pays_for() {
                run(
                    $subject,
                    super::racers_on_a_small_balance_get_exactly_what_it_pays_for,
                );
            }
            #[test]
            fn concurrent_retries_of_one_key_apply_it_once() {
                run($subject, super::concurrent_retries_of_one_key_apply_it_once);
            }
            #[test]
            fn agrees_with_a_simple_model() {
                super::agrees_with_a_simple_model($subject, 32);
            }
        }
    };
}

/// The file store, in a temporary directory.
pub struct FileSubject;

#[async_trait::async_trait]
impl Subject for FileSubject {
    type Place = tempfile::TempDir;
    type Store = super::FileStore;

    async fn place(&self) -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    async fn open_with(
        &self,
        place: &tempfile::TempDir,
        clock: super::Clock,
        welcome_expires: Option<std::time::Duration>,
    ) -> Arc<super::FileStore> {
        let config = super::StoreConfig {
            welcome_tokens: WELCOME,
            welcome_expires,
            clock,
            retry_interval: std::time::Duration::from_millis(20),
            ..super::StoreConfig::default()
        };
        // A store dropped without `close` (the model's unclean reopen, a crash in-process)
        // keeps its directory's lock until its writer and checkpointer threads have wound
        // down, a moment later; a crashed process would have let go of it at once.
        let started = std::time::Instant::now();
        loop {
            let dir = place.path().to_path_buf();
            let config = config.clone();
            let opened = tokio::task::spawn_blocking(move || super::FileStore::open(&dir, config))
                .await
                .expect("open");
            match opened {
                Err(super::OpenError::Locked(_))
                    if started.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                opened => return Arc::new(opened.expect("the store opens")),
            }
        }
    }
}

contract_suite!(file_store, FileSubject);

/// Lots: burn order, spanning, expiry at exactly `expires_at`, reads that never count an
/// expired lot, the welcome grant's expiry, bad terms. On every store, with a clock the test
/// moves ([`lots_suite!`]); a ledger written before lots, per store (the file store's below,
/// PostgreSQL's migration in its own tests).
pub mod lots {
    use super::*;
    use crate::domain::{LotKind, LotTake, LotTerms};
    use crate::store::Clock;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// The subject's store at `place`, its clock reading `now`.
    async fn open<S: Subject>(
        subject: &S,
        place: &S::Place,
        now: &Arc<AtomicI64>,
        welcome_expires_ms: Option<u64>,
    ) -> Arc<S::Store> {
        let now = now.clone();
        let clock = Clock::from_fn(move || now.load(Ordering::SeqCst));
        let welcome_expires = welcome_expires_ms.map(std::time::Duration::from_millis);
        subject.open_with(place, clock, welcome_expires).await
    }

    pub async fn credit(
        store: &dyn TokenStore,
        user: &str,
        amount: i64,
        terms: LotTerms,
    ) -> Result<u64, StoreError> {
        let change = TopupChange {
            user,
            amount,
            terms,
            reason: None,
            keyed: None,
        };
        let (outcome, commit) = store.topup(change).await?;
        commit.wait().await?;
        match outcome {
            Outcome::Applied(changed) => Ok(changed.balance),
            Outcome::Replayed(_) => panic!("unkeyed"),
        }
    }

    pub async fn held(
        store: &dyn TokenStore,
        user: &str,
    ) -> Vec<(u64, u64, Option<i64>, u8, LotKind)> {
        let (lots, _, commit) = store.lots(user).await.expect("lots");
        commit.wait().await.unwrap();
        lots.iter()
            .map(|l| (l.id, l.remaining, l.expires_at, l.priority, l.kind))
            .collect()
    }

    pub fn terms(expires_at: Option<i64>, priority: u8, kind: LotKind) -> LotTerms {
        LotTerms {
            expires_at,
            priority,
            kind,
        }
    }

    pub async fn charges_burn_lots_in_order_and_span_them<S: Subject>(subject: Arc<S>) {
        {
            let place = subject.place().await;
            let now = Arc::new(AtomicI64::new(1_000));
            let store = open(&*subject, &place, &now, None).await;
            // seq 1 the welcome grant (promo), 2 paid never, 3 paid expiring, 4 promo priority 10.
            credit(&*store, "u", 10, LotTerms::default()).await.unwrap();
            credit(&*store, "u", 5, terms(Some(9_000), 50, LotKind::Paid))
                .await
                .unwrap();
            credit(&*store, "u", 3, terms(None, 10, LotKind::Promo))
                .await
                .unwrap();
            use LotKind::{Paid, Promo};
            assert_eq!(
                held(&*store, "u").await,
                [
                    (4, 3, None, 10, Promo),
                    (3, 5, Some(9_000), 50, Paid),
                    (1, WELCOME, None, 50, Promo),
                    (2, 10, None, 50, Paid),
                ]
            );
            assert_eq!(charge(&*store, "u", 10).await, Ok(WELCOME + 8));
            assert_eq!(
                held(&*store, "u").await,
                [(1, WELCOME - 2, None, 50, Promo), (2, 10, None, 50, Paid)]
            );
            let history = whole_history(&*store, "u", 100).await;
            let last = history.last().unwrap();
            assert_eq!(
                last.from,
                [
                    LotTake { lot: 4, tokens: 3 },
                    LotTake { lot: 3, tokens: 5 },
                    LotTake { lot: 1, tokens: 2 }
                ],
                "one charge, three lots, named in its entry"
            );
            assert_eq!(history[0].lot, Some(1));
            // More than the lots hold: refused, nothing taken.
            assert_eq!(
                charge(&*store, "u", WELCOME + 9).await.unwrap_err().code(),
                ErrorCode::InsufficientTokens
            );
            assert_eq!(balance(&*store, "u").await, Some(WELCOME + 8));
            // A deduction burns in the same order.
            assert_eq!(topup(&*store, "u", -(WELCOME as i64)).await, Ok(8));
            assert_eq!(held(&*store, "u").await, [(2, 8, None, 50, Paid)]);
            assert!(store.audit().await.unwrap().ok);
        }
    }

    pub async fn a_lot_expires_at_exactly_its_expiry_and_reads_never_count_it<S: Subject>(
        subject: Arc<S>,
    ) {
        {
            let place = subject.place().await;
            let now = Arc::new(AtomicI64::new(1_000));
            let store = open(&*subject, &place, &now, None).await;
            credit(&*store, "u", 40, terms(Some(5_000), 50, LotKind::Paid))
                .await
                .unwrap();
            now.store(4_999, Ordering::SeqCst);
            assert_eq!(balance(&*store, "u").await, Some(WELCOME + 40));
            now.store(5_000, Ordering::SeqCst);
            // Nothing has run since: the read alone does not count it.
            assert_eq!(balance(&*store, "u").await, Some(WELCOME));
            assert_eq!(held(&*store, "u").await.len(), 1);
            assert_eq!(
                charge(&*store, "u", WELCOME + 1).await.unwrap_err().code(),
                ErrorCode::InsufficientTokens,
                "an expired lot pays nothing"
            );
            assert!(store.audit().await.unwrap().ok, "a refusal wrote nothing");
            now.store(7_000, Ordering::SeqCst);
            assert_eq!(charge(&*store, "u", 1).await, Ok(WELCOME - 1));
            let history = whole_history(&*store, "u", 100).await;
            let kinds: Vec<_> = history
                .iter()
                .map(|e| (e.kind, e.delta, e.balance, e.time.clone()))
                .collect();
            assert_eq!(
                kinds[2],
                (
                    EntryKind::Expire,
                    -40,
                    WELCOME,
                    crate::domain::format_instant(5_000)
                )
            );
            assert_eq!(kinds[3].0, EntryKind::Charge);
            assert!(store.audit().await.unwrap().ok);
            // Reopened (from the journal, then from a checkpoint): the same.
            subject.close(store).await;
            let store = open(&*subject, &place, &now, None).await;
            assert_eq!(balance(&*store, "u").await, Some(WELCOME - 1));
            assert!(store.audit().await.unwrap().ok);
        }
    }

    pub async fn the_welcome_grant_may_expire<S: Subject>(subject: Arc<S>) {
        {
            let place = subject.place().await;
            let now = Arc::new(AtomicI64::new(1_000));
            let store = open(&*subject, &place, &now, Some(60_000)).await;
            assert_eq!(
                credit(&*store, "u", 5, LotTerms::default()).await,
                Ok(WELCOME + 5)
            );
            assert_eq!(
                held(&*store, "u").await,
                [
                    (1, WELCOME, Some(61_000), 50, LotKind::Promo),
                    (2, 5, None, 50, LotKind::Paid)
                ]
            );
            now.store(61_000, Ordering::SeqCst);
            assert_eq!(balance(&*store, "u").await, Some(5));
            assert_eq!(charge(&*store, "u", 5).await, Ok(0));
            // Once per user, even after it expired.
            assert_eq!(credit(&*store, "u", 1, LotTerms::default()).await, Ok(1));
            assert!(store.audit().await.unwrap().ok);
        }
    }

    pub async fn bad_terms_change_nothing<S: Subject>(subject: Arc<S>) {
        {
            let place = subject.place().await;
            let now = Arc::new(AtomicI64::new(1_000));
            let store = open(&*subject, &place, &now, None).await;
            for bad in [
                terms(Some(1_000), 50, LotKind::Paid),
                terms(None, 101, LotKind::Paid),
            ] {
                let error = credit(&*store, "u", 5, bad).await.unwrap_err();
                assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
            }
            assert_eq!(balance(&*store, "u").await, None, "no account opened");
            assert_eq!(entries(&*store).await, 0);
        }
    }

    /// One step of [`the_past_view_is_the_history_then`]: the clock moves on by `after` ms,
    /// then a change.
    #[derive(Debug, Clone)]
    pub enum PastOp {
        Credit {
            after: i64,
            amount: i64,
            expires_in: Option<i64>,
            priority: u8,
            promo: bool,
        },
        Charge {
            after: i64,
            cost: u64,
        },
        Deduct {
            after: i64,
            amount: i64,
        },
        Entitle {
            after: i64,
            premium: bool,
        },
    }

    fn past_op() -> impl Strategy<Value = PastOp> {
        let after = 0i64..3_000;
        prop_oneof![
            4 => (after.clone(), 1i64..100, proptest::option::of(1i64..8_000), 0u8..3, any::<bool>())
                .prop_map(|(after, amount, expires_in, priority, promo)| PastOp::Credit {
                    after,
                    amount,
                    expires_in,
                    priority: priority * 50,
                    promo,
                }),
            4 => (after.clone(), 0u64..120).prop_map(|(after, cost)| PastOp::Charge { after, cost }),
            1 => (after.clone(), 1i64..60).prop_map(|(after, amount)| PastOp::Deduct { after, amount }),
            1 => (after, any::<bool>()).prop_map(|(after, premium)| PastOp::Entitle { after, premium }),
        ]
    }

    /// The account at `t` as the store reads it: balance, tier, lots (id, remaining); `None`
    /// for no account then.
    async fn past(
        store: &dyn TokenStore,
        user: &str,
        t: i64,
    ) -> Option<(u64, Tier, Vec<(u64, u64)>)> {
        match store.account_at(user, t).await {
            Ok((past, stale)) => {
                assert_eq!(stale, None);
                let lots = past.lots.iter().map(|l| (l.id, l.remaining)).collect();
                Some((past.account.balance, past.account.tier_at(t), lots))
            }
            Err(StoreError::UnknownUser(_)) => None,
            Err(error) => panic!("reading {user:?} at {t}: {error}"),
        }
    }

    /// For random histories (credits with and without expiry, charges, deductions,
    /// entitlements, the clock moving on between them): the balance at each entry's time (and
    /// just before it) is the history's running balance there; a lot is in the past view
    /// until the instant before its expiry, with what was left of it then, and gone at its
    /// expiry; before the first entry there is no account; reading changes nothing.
    pub fn the_past_view_is_the_history_then<S: Subject>(subject: S, cases: u32) {
        let steps = proptest::collection::vec(past_op(), 1..30);
        property(subject, cases, steps, past_case);
    }

    async fn past_case<S: Subject>(subject: Arc<S>, ops: Vec<PastOp>) -> Result<(), TestCaseError> {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000_000));
        let store = open(&*subject, &place, &now, None).await;
        let step = |after: i64| now.fetch_add(after, Ordering::SeqCst) + after;
        // Expiries by lot id, from the lots the store held right after each credit.
        let mut expiries: HashMap<u64, i64> = HashMap::new();
        for op in ops {
            // Refusals (too few tokens, a deduction before the account) are part of a
            // random history: they write nothing, which the checks below see.
            match op {
                PastOp::Credit {
                    after,
                    amount,
                    expires_in,
                    priority,
                    promo,
                } => {
                    let at = step(after);
                    let kind = match promo {
                        true => LotKind::Promo,
                        false => LotKind::Paid,
                    };
                    let terms = terms(expires_in.map(|e| at + e), priority, kind);
                    if credit(&*store, "u", amount, terms).await.is_ok()
                        && let Some(expires) = terms.expires_at
                    {
                        let (lots, _, _) = store.lots("u").await.unwrap();
                        let newest = lots.iter().map(|l| l.id).max().unwrap();
                        expiries.insert(newest, expires);
                    }
                }
                PastOp::Charge { after, cost } => {
                    step(after);
                    let _ = charge(&*store, "u", cost).await;
                }
                PastOp::Deduct { after, amount } => {
                    step(after);
                    let _ = topup(&*store, "u", -amount).await;
                }
                PastOp::Entitle { after, premium } => {
                    step(after);
                    let tier = match premium {
                        true => Tier::Premium,
                        false => Tier::Free,
                    };
                    let (_, commit) = store.entitle("u", tier, None).await.unwrap();
                    commit.wait().await.unwrap();
                }
            }
        }
        let entries_before = entries(&*store).await;
        let accounts_before = store.stats().await.unwrap().accounts;
        let history = match balance(&*store, "u").await {
            Some(_) => whole_history(&*store, "u", 7).await,
            // Every change refused: no account, no history.
            None => Vec::new(),
        };
        let time = |e: &crate::domain::HistoryEntry| {
            e.time.parse::<jiff::Timestamp>().unwrap().as_millisecond()
        };
        // The history's running balance and tier at `t`: its last entry by then.
        let running = |t: i64| {
            let upto: Vec<_> = history.iter().filter(|e| time(e) <= t).collect();
            let tier = upto.iter().rev().find_map(|e| e.tier).unwrap_or(Tier::Free);
            upto.last().map(|e| (e.balance, tier))
        };
        for entry in &history {
            let t = time(entry);
            for t in [t - 1, t] {
                let got = past(&*store, "u", t).await;
                let expected = running(t);
                prop_assert_eq!(
                    got.as_ref().map(|(balance, tier, _)| (*balance, *tier)),
                    expected,
                    "at {} (entry {})",
                    t,
                    entry.seq
                );
                if let Some((balance, _, lots)) = &got {
                    prop_assert_eq!(lots.iter().map(|(_, left)| left).sum::<u64>(), *balance);
                }
            }
        }
        // Each lot with an expiry: in the view the instant before it with what the debits
        // by then left of it, and gone at it.
        for (&lot, &expires) in &expiries {
            let opened = history
                .iter()
                .find(|e| e.lot == Some(lot))
                .expect("the credit");
            let taken: u64 = history
                .iter()
                .filter(|e| e.kind != EntryKind::Expire && time(e) < expires)
                .flat_map(|e| &e.from)
                .filter(|take| take.lot == lot)
                .map(|take| take.tokens)
                .sum();
            let left = opened.delta as u64 - taken;
            let before = past(&*store, "u", expires - 1).await.expect("an account");
            let held = before.2.iter().find(|(id, _)| *id == lot).map(|(_, l)| *l);
            prop_assert_eq!(
                held,
                (left > 0).then_some(left),
                "lot {} before its expiry",
                lot
            );
            let at = past(&*store, "u", expires).await.expect("an account");
            prop_assert!(
                at.2.iter().all(|(id, _)| *id != lot),
                "lot {} at its expiry",
                lot
            );
        }
        if let Some(first) = history.first() {
            prop_assert_eq!(past(&*store, "u", time(first) - 1).await, None);
            // Far ahead: only what never expires.
            let ahead = past(&*store, "u", i64::MAX / 2).await.expect("an account");
            let (lots, _, _) = store.lots("u").await.unwrap();
            let lasting: u64 = lots
                .iter()
                .filter(|l| l.expires_at.is_none())
                .map(|l| l.remaining)
                .sum();
            prop_assert_eq!(ahead.0, lasting);
        }
        prop_assert_eq!(past(&*store, "nobody", i64::MAX / 2).await, None);
        prop_assert_eq!(
            entries(&*store).await,
            entries_before,
            "reads write nothing"
        );
        prop_assert_eq!(store.stats().await.unwrap().accounts, accounts_before);
        Ok(())
    }
}

/// Runs every lot test of [`lots`] on one subject.
macro_rules! lots_suite {
    ($name:ident, $subject:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn charges_burn_lots_in_order_and_span_them() {
                run($subject, lots::charges_burn_lots_in_order_and_span_them);
            }
            #[test]
            fn a_lot_expires_at_exactly_its_expiry_and_reads_never_count_it() {
                run(
                    $subject,
                    lots::a_lot_expires_at_exactly_its_expiry_and_reads_never_count_it,
                );
            }
            #[test]
            fn the_welcome_grant_may_expire() {
                run($subject, lots::the_welcome_grant_may_expire);
            }
            #[test]
            fn bad_terms_change_nothing() {
                run($subject, lots::bad_terms_change_nothing);
            }
            #[test]
            fn the_past_view_is_the_history_then() {
                lots::the_past_view_is_the_history_then($subject, 12);
            }
        }
    };
}

lots_suite!(file_store_lots, FileSubject);
lots_suite!(postgres_lots, PgSubject);

/// Holds: set aside, ended exactly once (captured, voided, or expired at an instant the
/// tests reach by moving the store's clock), giving back to the lots they came from.
pub mod holds {
    use super::lots::{credit, held, terms};
    use super::*;
    use crate::domain::{HoldState, LotKind, LotTerms};
    use crate::store::{Clock, EndHold, HoldChange, HoldEnd, HoldSummary};
    use std::sync::atomic::{AtomicI64, Ordering};

    async fn open<S: Subject>(
        subject: &S,
        place: &S::Place,
        now: &Arc<AtomicI64>,
    ) -> Arc<S::Store> {
        let now = now.clone();
        let clock = Clock::from_fn(move || now.load(Ordering::SeqCst));
        subject.open_with(place, clock, None).await
    }

    pub async fn hold(
        store: &dyn TokenStore,
        user: &str,
        amount: u64,
        ttl_ms: i64,
    ) -> Result<HoldSummary, StoreError> {
        let change = HoldChange {
            user,
            amount,
            ttl_ms,
            keyed: None,
        };
        let (outcome, commit) = store.hold(change).await?;
        commit.wait().await?;
        match outcome {
            Outcome::Applied(changed) => Ok(changed.hold.expect("a hold's reply names it")),
            Outcome::Replayed(_) => panic!("unkeyed"),
        }
    }

    pub async fn end(
        store: &dyn TokenStore,
        id: u64,
        user: Option<&str>,
        end: HoldEnd,
    ) -> Result<(HoldSummary, u64), StoreError> {
        let change = EndHold {
            hold: id,
            user,
            end,
            memes: &[],
            keyed: None,
        };
        let (outcome, commit) = store.end_hold(change).await?;
        commit.wait().await?;
        match outcome {
            Outcome::Applied(changed) => Ok((changed.hold.expect("named"), changed.balance)),
            Outcome::Replayed(_) => panic!("unkeyed"),
        }
    }

    fn code<T: std::fmt::Debug>(result: Result<T, StoreError>) -> ErrorCode {
        result.expect_err("refused").code()
    }

    /// A user's holds open now, as `lots` lists them: (id, amount, expires_at).
    async fn open_holds(store: &dyn TokenStore, user: &str) -> Vec<(u64, u64, i64)> {
        let (_, holds, _) = store.lots(user).await.expect("lots");
        holds
            .iter()
            .map(|hold| (hold.id, hold.amount, hold.expires_at))
            .collect()
    }

    pub async fn a_hold_ends_once_and_gives_back_where_it_took<S: Subject>(subject: Arc<S>) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        // seq 1 the welcome grant (promo, 150), 2 a paid lot of 10 at priority 10.
        credit(&*store, "u", 10, terms(None, 10, LotKind::Paid))
            .await
            .unwrap();
        let first = hold(&*store, "u", 15, 60_000).await.unwrap();
        assert_eq!(
            (first.amount, first.state, first.expires_at),
            (15, HoldState::Open, 61_000)
        );
        assert_eq!(
            balance(&*store, "u").await,
            Some(145),
            "the balance drops at once"
        );
        assert_eq!(
            held(&*store, "u").await,
            [(1, 145, None, 50, LotKind::Promo)],
            "lot 2 is emptied first, then lot 1"
        );
        assert_eq!(open_holds(&*store, "u").await, [(first.id, 15, 61_000)]);
        // A charge cannot take what is held.
        assert_eq!(
            code(charge(&*store, "u", 146).await),
            ErrorCode::InsufficientTokens
        );
        // Capture 12: lot 2's 10 and 2 of lot 1's; 3 go back to lot 1.
        let (captured, after) = end(
            &*store,
            first.id,
            Some("u"),
            HoldEnd::Capture { amount: Some(12) },
        )
        .await
        .unwrap();
        assert_eq!(
            (captured.state, captured.captured, captured.returned),
            (HoldState::Captured, 12, 3)
        );
        assert_eq!(after, 148);
        assert_eq!(open_holds(&*store, "u").await, [], "ended");
        for again in [HoldEnd::Capture { amount: None }, HoldEnd::Void] {
            assert_eq!(
                code(end(&*store, first.id, None, again).await),
                ErrorCode::HoldClosed
            );
        }
        // Void gives everything back, re-opening an emptied lot as it was.
        let second = hold(&*store, "u", 148, 60_000).await.unwrap();
        assert_eq!(balance(&*store, "u").await, Some(0));
        credit(&*store, "u", 5, terms(None, 10, LotKind::Paid))
            .await
            .unwrap();
        let (voided, after) = end(&*store, second.id, None, HoldEnd::Void).await.unwrap();
        assert_eq!(
            (voided.state, voided.returned, after),
            (HoldState::Voided, 148, 153)
        );
        assert_eq!(
            held(&*store, "u")
                .await
                .iter()
                .map(|l| (l.0, l.1))
                .collect::<Vec<_>>(),
            [(6, 5), (1, 148)]
        );
        // Bad input changes nothing: another user's hold, more than held, an unknown one.
        let third = hold(&*store, "u", 3, 60_000).await.unwrap();
        charge(&*store, "other", 1).await.unwrap();
        for (bad, expected) in [
            (
                end(&*store, third.id, Some("other"), HoldEnd::Void).await,
                ErrorCode::NotFound,
            ),
            (
                end(
                    &*store,
                    third.id,
                    None,
                    HoldEnd::Capture { amount: Some(4) },
                )
                .await,
                ErrorCode::InvalidArgument,
            ),
            (
                end(&*store, 9_999, None, HoldEnd::Void).await,
                ErrorCode::NotFound,
            ),
        ] {
            assert_eq!(code(bad), expected);
        }
        assert_eq!(
            code(hold(&*store, "u", 1, 0).await),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(hold(&*store, "u", 151, 1_000).await),
            ErrorCode::InsufficientTokens
        );
        assert_eq!(balance(&*store, "u").await, Some(150));
        let kinds: Vec<_> = whole_history(&*store, "u", 100)
            .await
            .iter()
            .map(|e| (e.kind, e.delta, e.hold))
            .collect();
        assert_eq!(
            kinds[2..7],
            [
                (EntryKind::Hold, -15, Some(first.id)),
                (EntryKind::Capture, 3, Some(first.id)),
                (EntryKind::Hold, -148, Some(second.id)),
                (EntryKind::Topup, 5, None),
                (EntryKind::Void, 148, Some(second.id)),
            ]
        );
        assert!(store.audit().await.unwrap().ok);
        subject.close(store).await;
        // Reopened, the open hold is still open and the ended ones still ended.
        let store = open(&*subject, &place, &now).await;
        assert_eq!(balance(&*store, "u").await, Some(150));
        assert_eq!(
            code(end(&*store, first.id, None, HoldEnd::Void).await),
            ErrorCode::HoldClosed
        );
        let (voided, after) = end(&*store, third.id, Some("u"), HoldEnd::Void)
            .await
            .unwrap();
        assert_eq!((voided.returned, after), (3, 153));
        assert!(store.audit().await.unwrap().ok);
    }

    pub async fn a_hold_expires_at_exactly_its_expiry_and_reads_see_it_back<S: Subject>(
        subject: Arc<S>,
    ) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        // seq 1 the welcome grant (150), 2 a lot of 10 expiring at 5_000, spent first.
        credit(&*store, "u", 10, terms(Some(5_000), 10, LotKind::Paid))
            .await
            .unwrap();
        let taken = hold(&*store, "u", 20, 9_000).await.unwrap();
        assert_eq!(taken.expires_at, 10_000);
        now.store(9_999, Ordering::SeqCst);
        assert_eq!(balance(&*store, "u").await, Some(140));
        assert_eq!(open_holds(&*store, "u").await, [(taken.id, 20, 10_000)]);
        // At its expiry, with nothing run: the part from lot 1 is back, the part from lot 2
        // (expired at 5_000) is gone.
        now.store(10_000, Ordering::SeqCst);
        assert_eq!(balance(&*store, "u").await, Some(150));
        assert_eq!(open_holds(&*store, "u").await, [], "expired");
        assert_eq!(
            held(&*store, "u").await,
            [(1, 150, None, 50, LotKind::Promo)]
        );
        assert_eq!(
            code(end(&*store, taken.id, None, HoldEnd::Capture { amount: None }).await),
            ErrorCode::HoldExpired
        );
        let before = entries(&*store).await;
        assert_eq!(
            code(end(&*store, taken.id, None, HoldEnd::Void).await),
            ErrorCode::HoldExpired
        );
        assert_eq!(entries(&*store).await, before, "a refusal writes nothing");
        // The next change writes the release, dated the expiry.
        now.store(12_000, Ordering::SeqCst);
        assert_eq!(charge(&*store, "u", 1).await, Ok(149));
        let history = whole_history(&*store, "u", 100).await;
        let kinds: Vec<_> = history.iter().map(|e| (e.kind, e.delta)).collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::Welcome, 150),
                (EntryKind::Topup, 10),
                (EntryKind::Hold, -20),
                (EntryKind::Release, 10),
                (EntryKind::Charge, -1),
            ]
        );
        assert_eq!(history[3].time, crate::domain::format_instant(10_000));
        assert!(store.audit().await.unwrap().ok);
        subject.close(store).await;
        let store = open(&*subject, &place, &now).await;
        assert_eq!(balance(&*store, "u").await, Some(149));
        assert!(store.audit().await.unwrap().ok);
        let _ = LotTerms::default();
    }

    /// The balance at an instant (`account_at`) leaves out what a hold held then, counts what
    /// a capture or a void gave back from when it did, and what an expired hold gave back
    /// from its expiry, before its `release` entry is written and after.
    pub async fn the_past_view_leaves_out_what_was_held_then<S: Subject>(subject: Arc<S>) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        let at = |t: i64| {
            let store = store.clone();
            async move {
                match store.account_at("u", t).await {
                    Ok((past, _)) => {
                        let lots: u64 = past.lots.iter().map(|lot| lot.remaining).sum();
                        assert_eq!(
                            lots, past.account.balance,
                            "at {t}: the lots are the balance"
                        );
                        Some(past.account.balance)
                    }
                    Err(StoreError::UnknownUser(_)) => None,
                    Err(error) => panic!("reading u at {t}: {error}"),
                }
            }
        };
        // The welcome grant (150) and a paid lot of 10 at 1_000.
        credit(&*store, "u", 10, terms(None, 10, LotKind::Paid))
            .await
            .unwrap();
        now.store(2_000, Ordering::SeqCst);
        hold(&*store, "u", 20, 3_000).await.unwrap();
        now.store(3_000, Ordering::SeqCst);
        let second = hold(&*store, "u", 5, 60_000).await.unwrap();
        now.store(4_000, Ordering::SeqCst);
        end(
            &*store,
            second.id,
            None,
            HoldEnd::Capture { amount: Some(2) },
        )
        .await
        .unwrap();
        now.store(6_000, Ordering::SeqCst);
        let before = entries(&*store).await;
        let expected = [
            (999, None),
            (1_000, Some(160)),
            (1_999, Some(160)),
            (2_000, Some(140)),
            (3_000, Some(135)),
            (3_999, Some(135)),
            (4_000, Some(138)),
            (4_999, Some(138)),
            // The first hold expired at 5_000: its release is not written yet.
            (5_000, Some(158)),
            (6_000, Some(158)),
        ];
        for (t, balance) in expected {
            assert_eq!(at(t).await, balance, "at {t}");
        }
        assert_eq!(entries(&*store).await, before, "reading writes nothing");
        // The next change writes the release (dated 5_000, made at 7_000): the past is the same.
        now.store(7_000, Ordering::SeqCst);
        assert_eq!(charge(&*store, "u", 1).await, Ok(157));
        for (t, balance) in expected.into_iter().chain([(7_000, Some(157))]) {
            assert_eq!(at(t).await, balance, "at {t}, the release written");
        }
    }

    /// What a settle writes (alone, as memesd's expirer asks for it): what is due by then,
    /// dated when it ended, once; nothing when nothing is due, however often it is asked,
    /// by however many at once.
    pub async fn a_settle_writes_what_is_due_once_and_nothing_else<S: Subject>(subject: Arc<S>) {
        async fn settled(store: &dyn TokenStore, user: &str) -> u64 {
            let (written, commit) = store.settle(user).await.expect("a settle");
            commit.wait().await.unwrap();
            written
        }
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        // seq 1 the welcome grant (150), 2 a lot of 10 expiring at 5_000, spent first; 4 of
        // it held until 3_000. "v" has nothing that expires.
        credit(&*store, "u", 10, terms(Some(5_000), 10, LotKind::Paid))
            .await
            .unwrap();
        credit(&*store, "v", 10, LotTerms::default()).await.unwrap();
        hold(&*store, "u", 4, 2_000).await.unwrap();
        let nobody: Vec<String> = Vec::new();
        assert_eq!(store.due(10).await.unwrap(), nobody, "nothing due yet");
        let before = entries(&*store).await;
        assert_eq!(
            settled(&*store, "u").await,
            0,
            "nothing due: nothing written"
        );
        assert_eq!(settled(&*store, "v").await, 0);
        assert_eq!(entries(&*store).await, before);
        assert_eq!(code(store.settle("ghost").await), ErrorCode::NotFound);
        assert!(
            store.stats().await.unwrap().accounts == 2,
            "a settle opens nothing"
        );

        now.store(3_000, Ordering::SeqCst);
        assert_eq!(store.due(10).await.unwrap(), ["u"]);
        assert_eq!(settled(&*store, "u").await, 1, "the hold's release");
        assert_eq!(store.due(10).await.unwrap(), nobody);
        // Asked by many at once after the lot's expiry: one expire entry.
        now.store(6_000, Ordering::SeqCst);
        assert_eq!(store.due(10).await.unwrap(), ["u"]);
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { settled(&*store, "u").await })
            })
            .collect();
        let mut written = 0;
        for racer in racers {
            written += racer.await.unwrap();
        }
        assert_eq!(written, 1, "the expiry, written once");
        assert_eq!(store.due(10).await.unwrap(), nobody);
        assert_eq!(balance(&*store, "u").await, Some(150));
        let history = whole_history(&*store, "u", 100).await;
        let kinds: Vec<_> = history
            .iter()
            .map(|e| (e.kind, e.delta, e.balance))
            .collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::Welcome, 150, 150),
                (EntryKind::Topup, 10, 160),
                (EntryKind::Hold, -4, 156),
                (EntryKind::Release, 4, 160),
                (EntryKind::Expire, -10, 150),
            ]
        );
        use crate::domain::format_instant;
        assert_eq!(
            (history[3].time.as_str(), history[4].time.as_str()),
            (
                format_instant(3_000).as_str(),
                format_instant(5_000).as_str()
            ),
            "each dated when it ended"
        );
        assert!(store.audit().await.unwrap().ok);
        subject.close(store).await;
        let store = open(&*subject, &place, &now).await;
        assert_eq!(balance(&*store, "u").await, Some(150));
        assert_eq!(store.due(10).await.unwrap(), nobody);
        assert_eq!(settled(&*store, "u").await, 0);
        assert!(store.audit().await.unwrap().ok);
    }

    pub async fn racing_holds_and_charges_never_take_what_is_held<S: Subject>(subject: Arc<S>) {
        let place = subject.place().await;
        let store: Arc<dyn TokenStore> = subject.open(&place).await;
        charge(&*store, "r", 0).await.unwrap();
        let racers: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    match i % 2 {
                        0 => hold(&*store, "r", 10, 60_000).await.map(|h| Some(h.id)),
                        _ => charge(&*store, "r", 10).await.map(|_| None),
                    }
                })
            })
            .collect();
        let mut holds = Vec::new();
        let mut won = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(held) => {
                    won += 1;
                    holds.extend(held);
                }
                Err(error) => assert_eq!(error.code(), ErrorCode::InsufficientTokens),
            }
        }
        assert_eq!(won, 15, "150 tokens pay for exactly 15 of 10");
        assert_eq!(balance(&*store, "r").await, Some(0));
        let charged = 15 - holds.len() as u64;
        let voids: Vec<_> = holds
            .iter()
            .map(|&id| {
                let store = store.clone();
                tokio::spawn(async move { end(&*store, id, Some("r"), HoldEnd::Void).await })
            })
            .collect();
        for void in voids {
            void.await.unwrap().unwrap();
        }
        assert_eq!(balance(&*store, "r").await, Some(150 - 10 * charged));
        assert!(store.audit().await.unwrap().ok);
    }
}

/// Runs every hold test of [`holds`] on one subject.
macro_rules! holds_suite {
    ($name:ident, $subject:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn a_hold_ends_once_and_gives_back_where_it_took() {
                run(
                    $subject,
                    holds::a_hold_ends_once_and_gives_back_where_it_took,
                );
            }
            #[test]
            fn a_hold_expires_at_exactly_its_expiry_and_reads_see_it_back() {
                run(
                    $subject,
                    holds::a_hold_expires_at_exactly_its_expiry_and_reads_see_it_back,
                );
            }
            #[test]
            fn the_past_view_leaves_out_what_was_held_then() {
                run($subject, holds::the_past_view_leaves_out_what_was_held_then);
            }
            #[test]
            fn a_settle_writes_what_is_due_once_and_nothing_else() {
                run(
                    $subject,
                    holds::a_settle_writes_what_is_due_once_and_nothing_else,
                );
            }
            #[test]
            fn racing_holds_and_charges_never_take_what_is_held() {
                run(
                    $subject,
                    holds::racing_holds_and_charges_never_take_what_is_held,
                );
            }
        }
    };
}

holds_suite!(file_store_holds, FileSubject);

/// Refunds: (part of) a charge given back to the lots it came from, never more than is left
/// of it.
pub mod refunds {
    use super::lots::{credit, held, terms};
    use super::*;
    use crate::domain::LotKind;
    use crate::store::{Clock, KeyedAs, RefundChange, Refunded};
    use std::sync::atomic::{AtomicI64, Ordering};

    async fn open<S: Subject>(
        subject: &S,
        place: &S::Place,
        now: &Arc<AtomicI64>,
    ) -> Arc<S::Store> {
        let now = now.clone();
        let clock = Clock::from_fn(move || now.load(Ordering::SeqCst));
        subject.open_with(place, clock, None).await
    }

    pub async fn refund(
        store: &dyn TokenStore,
        entry: u64,
        user: Option<&str>,
        amount: Option<u64>,
    ) -> Result<Refunded, StoreError> {
        let change = RefundChange {
            entry,
            user,
            amount,
            keyed: None,
        };
        let (outcome, commit) = store.refund(change).await?;
        commit.wait().await?;
        match outcome {
            Outcome::Applied(refunded) => Ok(refunded),
            Outcome::Replayed(_) => panic!("unkeyed"),
        }
    }

    /// The seq of `user`'s latest entry.
    async fn last_seq(store: &dyn TokenStore, user: &str) -> u64 {
        let page = store.history(user, 1, None).await.expect("history");
        page.entries.last().expect("an entry").seq
    }

    fn code<T: std::fmt::Debug>(result: Result<T, StoreError>) -> ErrorCode {
        result.expect_err("refused").code()
    }

    pub async fn a_refund_gives_back_where_the_charge_took_never_more_than_is_left<S: Subject>(
        subject: Arc<S>,
    ) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        // seq 1 the welcome grant (promo, 150), 2 a paid lot of 10 at priority 10.
        credit(&*store, "u", 10, terms(None, 10, LotKind::Paid))
            .await
            .unwrap();
        now.store(2_000, Ordering::SeqCst);
        assert_eq!(charge(&*store, "u", 15).await, Ok(145));
        let charged = last_seq(&*store, "u").await;
        assert_eq!(
            held(&*store, "u").await,
            [(1, 145, None, 50, LotKind::Promo)]
        );
        now.store(3_000, Ordering::SeqCst);
        // 3 back: the last taken were lot 1's.
        let first = refund(&*store, charged, Some("u"), Some(3)).await.unwrap();
        assert_eq!(
            (
                first.balance,
                first.reverses,
                first.refunded,
                first.returned,
                first.left
            ),
            (148, charged, 3, 3, 12)
        );
        assert_eq!(
            held(&*store, "u").await,
            [(1, 148, None, 50, LotKind::Promo)]
        );
        // All that is left, without naming the user: lot 1's other 2, and lot 2's 10, re-opened
        // as it was.
        now.store(4_000, Ordering::SeqCst);
        let rest = refund(&*store, charged, None, None).await.unwrap();
        assert_eq!(
            (rest.balance, rest.refunded, rest.returned, rest.left),
            (160, 12, 12, 0)
        );
        assert_eq!(
            held(&*store, "u").await,
            [
                (2, 10, None, 10, LotKind::Paid),
                (1, 150, None, 50, LotKind::Promo)
            ]
        );
        // Nothing is left: refused, nothing changes.
        let written = entries(&*store).await;
        assert_eq!(
            code(refund(&*store, charged, Some("u"), Some(1)).await),
            ErrorCode::InvalidArgument
        );
        assert_eq!(entries(&*store).await, written);
        // History names what each refund reverses.
        let history = whole_history(&*store, "u", 10).await;
        let refunds: Vec<_> = history
            .iter()
            .filter(|e| e.kind == EntryKind::Refund)
            .map(|e| (e.seq, e.delta, e.reverses, e.refunded, e.from.len()))
            .collect();
        assert_eq!(
            refunds,
            [
                (first.refund, 3, Some(charged), Some(3), 1),
                (rest.refund, 12, Some(charged), Some(12), 2)
            ]
        );
        // The past view replays the refunds.
        let (past, _) = store.account_at("u", 3_500).await.unwrap();
        assert_eq!(past.account.balance, 148);
        assert!(store.audit().await.unwrap().ok);
        // They are kept across a reopen.
        subject.close(store).await;
        let store = open(&*subject, &place, &now).await;
        assert_eq!(balance(&*store, "u").await, Some(160));
        assert_eq!(
            code(refund(&*store, charged, None, Some(1)).await),
            ErrorCode::InvalidArgument
        );
        let (past, _) = store.account_at("u", 2_500).await.unwrap();
        assert_eq!(past.account.balance, 145);
        assert!(store.audit().await.unwrap().ok);
    }

    pub async fn a_part_whose_lot_expired_expires_at_once<S: Subject>(subject: Arc<S>) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        // Lot 2: 10 tokens at priority 0, until 5_000.
        credit(&*store, "u", 10, terms(Some(5_000), 0, LotKind::Paid))
            .await
            .unwrap();
        assert_eq!(charge(&*store, "u", 12).await, Ok(148));
        let charged = last_seq(&*store, "u").await;
        now.store(6_000, Ordering::SeqCst);
        // 5 back: lot 1's 2 return, 3 of lot 2's expire at once.
        let part = refund(&*store, charged, Some("u"), Some(5)).await.unwrap();
        assert_eq!(
            (part.balance, part.refunded, part.returned, part.left),
            (150, 5, 2, 7)
        );
        let rest = refund(&*store, charged, Some("u"), None).await.unwrap();
        assert_eq!(
            (rest.balance, rest.refunded, rest.returned, rest.left),
            (150, 7, 0, 0)
        );
        assert_eq!(
            held(&*store, "u").await,
            [(1, 150, None, 50, LotKind::Promo)]
        );
        assert!(store.audit().await.unwrap().ok);
    }

    pub async fn bad_refunds_change_nothing<S: Subject>(subject: Arc<S>) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        // Lines of many users, so that finding an entry's user has some searching to do.
        for i in 0..200u64 {
            charge(&*store, &format!("user-{i}"), 1 + i % 7)
                .await
                .unwrap();
        }
        credit(&*store, "u", 10, terms(None, 50, LotKind::Paid))
            .await
            .unwrap();
        let topped = last_seq(&*store, "u").await;
        charge(&*store, "u", 4).await.unwrap();
        let charged = last_seq(&*store, "u").await;
        for i in 200..400u64 {
            charge(&*store, &format!("user-{i}"), 1 + i % 7)
                .await
                .unwrap();
        }
        let (written, before) = (entries(&*store).await, balance(&*store, "u").await);
        for (bad, expected) in [
            (
                refund(&*store, topped, None, None).await,
                ErrorCode::InvalidArgument,
            ),
            (
                refund(&*store, charged, None, Some(5)).await,
                ErrorCode::InvalidArgument,
            ),
            (
                refund(&*store, charged, None, Some(0)).await,
                ErrorCode::InvalidArgument,
            ),
            (
                refund(&*store, charged, Some("user-3"), None).await,
                ErrorCode::NotFound,
            ),
            (
                refund(&*store, charged, Some("nobody"), None).await,
                ErrorCode::NotFound,
            ),
            (
                refund(&*store, 999_999, None, None).await,
                ErrorCode::NotFound,
            ),
            (refund(&*store, 0, None, None).await, ErrorCode::NotFound),
        ] {
            assert_eq!(code(bad), expected);
        }
        assert_eq!(entries(&*store).await, written);
        assert_eq!(balance(&*store, "u").await, before);
        // Every charge is found by its seq alone, and refunded to its own user.
        for i in [0u64, 1, 99, 199, 200, 399] {
            let user = format!("user-{i}");
            let seq = last_seq(&*store, &user).await;
            let done = refund(&*store, seq, None, None).await.unwrap();
            assert_eq!(
                (done.balance, done.refunded),
                (WELCOME, 1 + i % 7),
                "{user}"
            );
        }
        assert!(store.audit().await.unwrap().ok);
    }

    pub async fn keys_replay_a_refund_and_refuse_another<S: Subject>(subject: Arc<S>) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        charge(&*store, "u", 10).await.unwrap();
        let charged = last_seq(&*store, "u").await;
        let keyed = |fingerprint: &'static str| {
            Some(KeyedAs {
                idem: Idempotency {
                    key: "admins\u{1f}r1",
                    fingerprint,
                },
                reply: Box::new(|refunded: Refunded| {
                    StoredReply::parse(format!("{{\"new_balance\":{}}}", refunded.balance)).unwrap()
                }),
            })
        };
        let send = |amount: u64, fingerprint: &'static str| {
            let store = store.clone();
            async move {
                let change = RefundChange {
                    entry: charged,
                    user: None,
                    amount: Some(amount),
                    keyed: keyed(fingerprint),
                };
                let (outcome, commit) = store.refund(change).await?;
                commit.wait().await?;
                Ok::<_, StoreError>(outcome)
            }
        };
        assert!(matches!(
            send(4, "refund 4").await.unwrap(),
            Outcome::Applied(Refunded { balance: 144, .. })
        ));
        match send(4, "refund 4").await.unwrap() {
            Outcome::Replayed(reply) => assert_eq!(reply.as_str(), r#"{"new_balance":144}"#),
            other => panic!("expected a replay, got {other:?}"),
        }
        assert_eq!(
            code(send(5, "refund 5").await),
            ErrorCode::IdempotencyConflict
        );
        assert_eq!(balance(&*store, "u").await, Some(144));
        assert!(store.audit().await.unwrap().ok);
    }

    pub async fn a_capture_is_refunded_as_a_charge_is<S: Subject>(subject: Arc<S>) {
        use crate::store::HoldEnd;
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        // seq 1 the welcome grant (promo, 150), 2 a paid lot of 10 at priority 10.
        credit(&*store, "u", 10, terms(None, 10, LotKind::Paid))
            .await
            .unwrap();
        let set_aside = super::holds::hold(&*store, "u", 15, 60_000).await.unwrap();
        // It spends lot 2's 10 and 2 of lot 1's; 3 go back to lot 1.
        let (_, after) = super::holds::end(
            &*store,
            set_aside.id,
            None,
            HoldEnd::Capture { amount: Some(12) },
        )
        .await
        .unwrap();
        assert_eq!(after, 148);
        let captured = last_seq(&*store, "u").await;
        // 5 back, the last spent first: lot 1's 2, then 3 of lot 2's, re-opening it.
        let part = refund(&*store, captured, Some("u"), Some(5)).await.unwrap();
        assert_eq!(
            (part.balance, part.refunded, part.returned, part.left),
            (153, 5, 5, 7)
        );
        assert_eq!(
            held(&*store, "u").await,
            [
                (2, 3, None, 10, LotKind::Paid),
                (1, 150, None, 50, LotKind::Promo)
            ]
        );
        // The hold entry itself is no refund's.
        assert_eq!(
            code(refund(&*store, set_aside.id, None, None).await),
            ErrorCode::InvalidArgument
        );
        subject.close(store).await;
        let store = open(&*subject, &place, &now).await;
        let rest = refund(&*store, captured, None, None).await.unwrap();
        assert_eq!((rest.balance, rest.refunded, rest.left), (160, 7, 0));
        assert_eq!(
            code(refund(&*store, captured, None, None).await),
            ErrorCode::InvalidArgument
        );
        assert!(store.audit().await.unwrap().ok);
    }

    pub async fn racing_refunds_of_one_charge_give_back_at_most_all_of_it<S: Subject>(
        subject: Arc<S>,
    ) {
        let place = subject.place().await;
        let now = Arc::new(AtomicI64::new(1_000));
        let store = open(&*subject, &place, &now).await;
        charge(&*store, "r", 5).await.unwrap();
        let charged = last_seq(&*store, "r").await;
        let racers: Vec<_> = (0..12)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    if i % 3 == 0 {
                        charge(&*store, "r", 1).await.map(|_| false)
                    } else {
                        refund(&*store, charged, Some("r"), Some(1))
                            .await
                            .map(|_| true)
                    }
                })
            })
            .collect();
        let mut refunded = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(true) => refunded += 1,
                Ok(false) => {}
                Err(error) => assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}"),
            }
        }
        assert_eq!(refunded, 5, "exactly what the charge took");
        assert_eq!(balance(&*store, "r").await, Some(WELCOME - 4));
        assert!(store.audit().await.unwrap().ok);
    }
}

/// Runs every refund test of [`refunds`] on one subject.
macro_rules! refunds_suite {
    ($name:ident, $subject:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn a_refund_gives_back_where_the_charge_took_never_more_than_is_left() {
                run(
                    $subject,
                    refunds::a_refund_gives_back_where_the_charge_took_never_more_than_is_left,
                );
            }
            #[test]
            fn a_part_whose_lot_expired_expires_at_once() {
                run($subject, refunds::a_part_whose_lot_expired_expires_at_once);
            }
            #[test]
            fn bad_refunds_change_nothing() {
                run($subject, refunds::bad_refunds_change_nothing);
            }
            #[test]
            fn keys_replay_a_refund_and_refuse_another() {
                run($subject, refunds::keys_replay_a_refund_and_refuse_another);
            }
            #[test]
            fn a_capture_is_refunded_as_a_charge_is() {
                run($subject, refunds::a_capture_is_refunded_as_a_charge_is);
            }
            #[test]
            fn racing_refunds_of_one_charge_give_back_at_most_all_of_it() {
                run(
                    $subject,
                    refunds::racing_refunds_of_one_charge_give_back_at_most_all_of_it,
                );
            }
        }
    };
}

refunds_suite!(file_store_refunds, FileSubject);

/// A file ledger written before lots: journal lines and a version 1 checkpoint.
mod file_lots {
    use super::lots::*;
    use super::*;
    use crate::domain::LotKind;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A file store at `dir` whose clock reads `now`.
    fn open_file(dir: &std::path::Path, now: &Arc<AtomicI64>) -> super::super::FileStore {
        let now = now.clone();
        let config = super::super::StoreConfig {
            welcome_tokens: WELCOME,
            clock: super::super::Clock::from_fn(move || now.load(Ordering::SeqCst)),
            ..super::super::StoreConfig::default()
        };
        super::super::FileStore::open(dir, config).expect("the store opens")
    }

    #[test]
    fn a_ledger_written_before_lots_keeps_its_balances_as_one_lot_each() {
        run(FileSubject, |_| async {
            let dir = tempfile::tempdir().unwrap();
            // Lines as the previous memesd wrote them: no lots anywhere.
            let journal = concat!(
                r#"{"seq":1,"time":10,"user":"a","entries":[{"kind":"welcome","delta":150,"balance":150},{"kind":"charge","delta":-1,"balance":149}],"memes":["m"]}"#,
                "\n",
                r#"{"seq":3,"time":11,"user":"a","prev":0,"entries":[{"kind":"topup","delta":20,"balance":169}]}"#,
                "\n",
                r#"{"batch_start":0}"#,
                "\n",
            );
            std::fs::write(dir.path().join("journal.ndjson"), journal).unwrap();
            let now = Arc::new(AtomicI64::new(1_000));
            let store = open_file(dir.path(), &now);
            assert_eq!(held(&store, "a").await, [(0, 169, None, 50, LotKind::Paid)]);
            assert!(store.audit().await.unwrap().ok);
            assert_eq!(charge(&store, "a", 9).await, Ok(160));
            assert_eq!(
                credit(&store, "a", 5, terms(None, 0, LotKind::Promo)).await,
                Ok(165)
            );
            assert_eq!(charge(&store, "a", 6).await, Ok(159));
            assert_eq!(held(&store, "a").await, [(0, 159, None, 50, LotKind::Paid)]);
            assert!(store.audit().await.unwrap().ok);
            store.close().unwrap();
            drop(store);
            // A version 1 checkpoint (rows without lots) loads the same way.
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("journal.ndjson"), journal).unwrap();
            let offset = journal.len();
            let checkpoint = format!(
                r#"{{"format":"memes-snapshot","version":1,"journal_offset":{offset},"next_seq":4,"accounts":[["a",169,{},"free",null]],"keys":[]}}"#,
                journal.find("\n").unwrap() + 1
            );
            std::fs::write(dir.path().join("snapshot.json"), checkpoint).unwrap();
            let store = open_file(dir.path(), &now);
            assert_eq!(held(&store, "a").await, [(0, 169, None, 50, LotKind::Paid)]);
            assert_eq!(charge(&store, "a", 9).await, Ok(160));
            assert!(store.audit().await.unwrap().ok);
        });
    }
}

/// The PostgreSQL store, in a fresh database of the test process's throwaway cluster.
pub struct PgSubject;

#[async_trait::async_trait]
impl Subject for PgSubject {
    type Place = super::pg::testing::TestDatabase;
    type Store = super::pg::PgStore;

    async fn place(&self) -> super::pg::testing::TestDatabase {
        tokio::task::spawn_blocking(super::pg::testing::TestDatabase::create)
            .await
            .expect("a test database")
    }

    async fn open_with(
        &self,
        place: &super::pg::testing::TestDatabase,
        clock: super::Clock,
        welcome_expires: Option<std::time::Duration>,
    ) -> Arc<super::pg::PgStore> {
        let config = super::pg::PgConfig {
            welcome_tokens: WELCOME,
            welcome_expires,
            clock,
            pool_size: 4,
            ..super::pg::PgConfig::new(place.url.clone())
        };
        Arc::new(
            super::pg::PgStore::open(config)
                .await
                .expect("the store opens"),
        )
    }
}

contract_suite!(postgres, PgSubject);
holds_suite!(postgres_holds, PgSubject);
refunds_suite!(postgres_refunds, PgSubject);
