//! The service: one typed call per request, whatever front it came through.
//!
//! A front parses its wire format into an op's request and a [`Caller`], calls the op's
//! typed method ([`Service::get`], [`Service::topup`], …, each returning that op's reply
//! type), and encodes the reply or the [`ServiceError`]. A front that reads any op from one
//! stream (the socket) hands a [`Request`] to [`Service::submit`], which pipelines, and
//! encodes the [`Reply`], which holds any op's reply (made from the list of ops and each
//! request type's [`Handled`] reply type, declared here beside the methods). The service
//! checks the request, decides access on the caller, applies the rate limit, and
//! orchestrates the work: catalogue choice, premium images, and the charge, which the store
//! decides by the rules of the money. It knows no wire format and holds no balance.
//!
//! Sub-modules: [`access`] (who is calling, who is an admin), [`admin_keys`] (the keys
//! admins present over HTTP, reloadable), [`ratelimit`], [`deliver`]
//! (charge-on-delivery, written once for plain and generated memes), [`reply`] and
//! [`error`] (what a call returns).

pub mod access;
pub mod admin_keys;
pub mod deliver;
pub mod error;
pub mod ratelimit;
pub mod reply;

pub use access::{AdminPolicy, Admitted, Caller, Peer, Principal};
pub use admin_keys::AdminKeys;
use admin_keys::ReadKeys;
pub use error::ServiceError;
pub use reply::{Delivered, Delivery, Found, GetReply, Handled, Nearest, Reply, Stored};

use crate::catalogue::location::Geocoder;
use crate::catalogue::select::Deliveries;
use crate::catalogue::{Catalogue, CatalogueError};
use crate::domain::{AuditReport, ErrorCode, HistoryCursor, Tier, now_ms};
use crate::premium::Premium;
use crate::premium::claims::Claims;
use crate::protocol::{
    self, AuditRequest, BalanceData, BalanceRequest, CaptureRequest, EntitleData, EntitleRequest,
    GetRequest, HistoryData, HistoryRequest, HoldData, HoldRequest, Location, LotsData,
    LotsRequest, RefundData, RefundRequest, ReloadData, ReloadRequest, Request, SearchRequest,
    SimilarRequest, StatusData, StatusRequest, TopupData, TopupRequest, VoidRequest,
};
use crate::store::rules::{self, KeyOwner};
use crate::store::{
    Changed, Commit, EndHold, HoldChange, HoldEnd, Idempotency, Keyed, KeyedAs, Outcome,
    RefundChange, Refunded, StoreError, StoredReply, TokenStore, TopupChange,
};
use crate::telemetry::{self, Tokens};
use arc_swap::ArcSwap;
use ratelimit::RateLimit;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Settings of the request handling.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Tokens per delivered meme.
    pub meme_cost: u64,
    /// The catalogue file to (re)load; `None` for the embedded catalogue.
    pub catalogue_path: Option<PathBuf>,
    pub admin: AdminPolicy,
    /// The admin keys of the HTTP fronts, re-read with the catalogue on every reload.
    pub admin_keys: Arc<AdminKeys>,
    /// Requests per second allowed per user (token bucket), if limited.
    pub rate_limit: Option<u32>,
}

/// Everything a request may need, shared by every front and connection.
pub struct Service {
    store: Arc<dyn TokenStore>,
    catalogue: ArcSwap<Catalogue>,
    deliveries: Arc<Deliveries>,
    geocoder: Arc<OnceLock<Option<Geocoder>>>,
    premium: Premium,
    limiter: Option<RateLimit>,
    config: ServiceConfig,
    started: Instant,
}

/// A request's outcome, possibly still waiting for its change to be durable: `T` is the
/// reply, typed by op ([`Reply`] holds any op's).
///
/// [`Service::submit`] returns as soon as a request is applied; the answer settles once the
/// change it reports is durable. A front that pipelines (the socket) reads the next request
/// meanwhile, which is what lets many changes share one disk flush.
#[must_use = "an answer is only final once settled"]
pub struct Answer<T = Reply> {
    outcome: Result<T, ServiceError>,
    commit: Commit,
    /// Where to remember the memes a delivery gave its user (for variety), once the charge
    /// is durable.
    remember: Option<Arc<Deliveries>>,
    /// Tokens the change moved, counted once it is durable.
    moved: Option<(Tokens, u64)>,
}

impl<T> Answer<T> {
    fn ready(outcome: Result<T, ServiceError>) -> Answer<T> {
        Answer {
            outcome,
            commit: Commit::done(),
            remember: None,
            moved: None,
        }
    }

    fn pending(reply: T, commit: Commit) -> Answer<T> {
        Answer {
            outcome: Ok(reply),
            commit,
            remember: None,
            moved: None,
        }
    }

    /// Counts the tokens the change moved once it is durable.
    fn moving(mut self, kind: Tokens, amount: u64) -> Answer<T> {
        self.moved = Some((kind, amount));
        self
    }

    /// The same answer with its reply mapped by `f` (an op's reply into [`Reply`]).
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer {
            outcome: self.outcome.map(f),
            commit: self.commit,
            remember: self.remember,
            moved: self.moved,
        }
    }
}

impl<T: Delivered> Answer<T> {
    /// The final outcome: the reply once its change is durable, or `unavailable` if the
    /// change could not be made durable (it was then taken back).
    pub async fn settle(self) -> Result<T, ServiceError> {
        self.commit.wait().await?;
        if let Some((kind, amount)) = self.moved {
            telemetry::tokens(kind, amount);
        }
        if let (Some(deliveries), Ok(reply)) = (&self.remember, &self.outcome)
            && let Some(delivery) = reply.delivery()
        {
            let catalogue = &delivery.catalogue;
            let keys = delivery.picked.iter().map(|i| catalogue.delivery_key(*i));
            deliveries.record(&delivery.user_id, keys);
        }
        self.outcome
    }
}

impl<T> From<Result<(T, Commit), ServiceError>> for Answer<T> {
    fn from(result: Result<(T, Commit), ServiceError>) -> Answer<T> {
        match result {
            Ok((reply, commit)) => Answer::pending(reply, commit),
            Err(error) => Answer::ready(Err(error)),
        }
    }
}

// Each op's reply type, as its method below returns it.
impl Handled for GetRequest {
    type Reply = GetReply;
    fn delivery(reply: &GetReply) -> Option<&Delivery> {
        reply.delivery()
    }
}
impl Handled for TopupRequest {
    type Reply = Stored<TopupData>;
}
impl Handled for BalanceRequest {
    type Reply = BalanceData;
}
impl Handled for HoldRequest {
    type Reply = Stored<HoldData>;
}
impl Handled for RefundRequest {
    type Reply = Stored<RefundData>;
}
impl Handled for CaptureRequest {
    type Reply = Stored<HoldData>;
}
impl Handled for VoidRequest {
    type Reply = Stored<HoldData>;
}
impl Handled for HistoryRequest {
    type Reply = HistoryData;
}
impl Handled for LotsRequest {
    type Reply = LotsData;
}
impl Handled for StatusRequest {
    type Reply = StatusData;
}
impl Handled for SearchRequest {
    type Reply = Found;
}
impl Handled for SimilarRequest {
    type Reply = Nearest;
}
impl Handled for EntitleRequest {
    type Reply = EntitleData;
}
impl Handled for AuditRequest {
    type Reply = AuditReport;
}
impl Handled for ReloadRequest {
    type Reply = ReloadData;
}

impl Service {
    pub fn new(
        store: Arc<dyn TokenStore>,
        catalogue: Catalogue,
        premium: Premium,
        config: ServiceConfig,
    ) -> Service {
        let geocoder = Arc::new(OnceLock::new());
        // Loading the place data takes ~0.1 s: do it off the request path, at once.
        let loading = geocoder.clone();
        std::thread::spawn(move || {
            loading.get_or_init(load_geocoder);
        });
        telemetry::catalogue_loaded(catalogue.len());
        Service {
            store,
            catalogue: ArcSwap::from_pointee(catalogue),
            deliveries: Arc::default(),
            geocoder,
            premium,
            limiter: config.rate_limit.map(RateLimit::per_second),
            config,
            started: Instant::now(),
        }
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// Verifies a signed claim (JWT) with this daemon's claims key.
    pub fn verify_token(&self, token: &str) -> Result<Claims, ServiceError> {
        self.premium.verify(token).map_err(ServiceError::from)
    }

    /// True when this daemon verifies signed claims (it was given a claims key).
    pub fn verifies_tokens(&self) -> bool {
        self.premium.verifies_tokens()
    }

    /// Where a generated image with this SHA-256 is stored on this host.
    pub fn image_path(&self, sha256: &str) -> PathBuf {
        self.premium.image_path(sha256)
    }

    /// Sets the gauges that are read rather than counted: whether the store accepts
    /// changes, and how many accounts it holds. Called before metrics are rendered.
    pub async fn refresh_gauges(&self) {
        let health = self.store.health().await;
        telemetry::store_writable(self.store.kind(), health.writable);
        telemetry::accounts(health.accounts);
    }

    /// Whether memesd can serve every request now: the store accepts changes and a
    /// catalogue is loaded. The reason when it cannot.
    pub async fn readiness(&self) -> Result<(), String> {
        if !self.store.health().await.writable {
            return Err("the ledger does not accept changes".into());
        }
        if self.catalogue.load().is_empty() {
            return Err("no meme catalogue is loaded".into());
        }
        Ok(())
    }

    /// Handles one request for `caller` up to the point where it is applied; the answer
    /// settles once it is durable. Requests submitted one after another by the same front
    /// are applied in that order.
    pub async fn submit(&self, caller: &Caller, request: Request) -> Answer {
        if let Err(error) = self.admit(caller, &request) {
            return Answer::ready(Err(error));
        }
        match request {
            Request::Get(get) => self.delivered(caller, get).await.map(Reply::Get),
            Request::Topup(topup) => self.topped_up(caller, topup).await.map(Reply::Topup),
            Request::Balance(balance) => {
                Answer::from(self.balance_of(balance).await).map(Reply::Balance)
            }
            Request::Entitle(entitle) => {
                Answer::from(self.entitled(entitle).await).map(Reply::Entitle)
            }
            Request::History(history) => {
                Answer::ready(self.history_of(history).await.map(Reply::History))
            }
            Request::Lots(lots) => Answer::from(self.lots_of(lots).await).map(Reply::Lots),
            Request::Hold(hold) => self.held(hold).await.map(Reply::Hold),
            Request::Capture(capture) => self.captured(capture).await.map(Reply::Capture),
            Request::Void(void) => self.voided(void).await.map(Reply::Void),
            Request::Refund(refund) => self.refunded(refund).await.map(Reply::Refund),
            Request::Status(_) => Answer::ready(self.status_now().await.map(Reply::Status)),
            Request::Search(search) => Answer::ready(Ok(Reply::Search(self.found(search)))),
            Request::Similar(similar) => Answer::ready(self.nearest(similar).map(Reply::Similar)),
            Request::Audit(_) => Answer::ready(self.audited().await.map(Reply::Audit)),
            Request::Reload(_) => Answer::ready(self.reloaded().await.map(Reply::Reload)),
        }
    }

    /// `get`: memes (or an image) delivered and charged, once the charge is durable.
    pub async fn get(
        &self,
        caller: &Caller,
        request: GetRequest,
    ) -> Result<GetReply, ServiceError> {
        self.admit(caller, &request)?;
        self.delivered(caller, request).await.settle().await
    }

    /// `topup`: tokens added or deducted (or the stored reply of the same request, replayed),
    /// once the change is durable.
    pub async fn topup(
        &self,
        caller: &Caller,
        request: TopupRequest,
    ) -> Result<Stored<TopupData>, ServiceError> {
        self.admit(caller, &request)?;
        self.topped_up(caller, request).await.settle().await
    }

    /// `balance`: an account's balance and tier, with every change before it durable.
    pub async fn balance(
        &self,
        caller: &Caller,
        request: BalanceRequest,
    ) -> Result<BalanceData, ServiceError> {
        self.admit(caller, &request)?;
        let (data, commit) = self.balance_of(request).await?;
        commit.wait().await?;
        Ok(data)
    }

    /// `lots`: the lots an account can spend now, in burn order, with every change before it
    /// durable.
    pub async fn lots(
        &self,
        caller: &Caller,
        request: LotsRequest,
    ) -> Result<LotsData, ServiceError> {
        self.admit(caller, &request)?;
        let (data, commit) = self.lots_of(request).await?;
        commit.wait().await?;
        Ok(data)
    }

    /// `hold`: tokens set aside (or the stored reply of the same request, replayed), once the
    /// change is durable.
    pub async fn hold(
        &self,
        caller: &Caller,
        request: HoldRequest,
    ) -> Result<Stored<HoldData>, ServiceError> {
        self.admit(caller, &request)?;
        self.held(request).await.settle().await
    }

    /// `capture`: a hold ended by spending (part of) it, once the change is durable.
    pub async fn capture(
        &self,
        caller: &Caller,
        request: CaptureRequest,
    ) -> Result<Stored<HoldData>, ServiceError> {
        self.admit(caller, &request)?;
        self.captured(request).await.settle().await
    }

    /// `void`: a hold ended by giving all of it back, once the change is durable.
    pub async fn void(
        &self,
        caller: &Caller,
        request: VoidRequest,
    ) -> Result<Stored<HoldData>, ServiceError> {
        self.admit(caller, &request)?;
        self.voided(request).await.settle().await
    }

    /// `refund`: (part of) a charge given back, once the change is durable.
    pub async fn refund(
        &self,
        caller: &Caller,
        request: RefundRequest,
    ) -> Result<Stored<RefundData>, ServiceError> {
        self.admit(caller, &request)?;
        self.refunded(request).await.settle().await
    }

    /// `history`: a page of an account's ledger entries.
    pub async fn history(
        &self,
        caller: &Caller,
        request: HistoryRequest,
    ) -> Result<HistoryData, ServiceError> {
        self.admit(caller, &request)?;
        self.history_of(request).await
    }

    /// `status`: versions, uptime and counts.
    pub async fn status(
        &self,
        caller: &Caller,
        request: StatusRequest,
    ) -> Result<StatusData, ServiceError> {
        self.admit(caller, &request)?;
        self.status_now().await
    }

    /// `search`: ranked matches for a query.
    pub fn search(&self, caller: &Caller, request: SearchRequest) -> Result<Found, ServiceError> {
        self.admit(caller, &request)?;
        Ok(self.found(request))
    }

    /// `similar`: the memes nearest in meaning to one meme.
    pub fn similar(
        &self,
        caller: &Caller,
        request: SimilarRequest,
    ) -> Result<Nearest, ServiceError> {
        self.admit(caller, &request)?;
        self.nearest(request)
    }

    /// `entitle`: an account's tier set, once the change is durable.
    pub async fn entitle(
        &self,
        caller: &Caller,
        request: EntitleRequest,
    ) -> Result<EntitleData, ServiceError> {
        self.admit(caller, &request)?;
        let (data, commit) = self.entitled(request).await?;
        commit.wait().await?;
        Ok(data)
    }

    /// `audit`: the whole ledger checked.
    pub async fn audit(
        &self,
        caller: &Caller,
        request: AuditRequest,
    ) -> Result<AuditReport, ServiceError> {
        self.admit(caller, &request)?;
        self.audited().await
    }

    /// `reload`: the catalogue and the admin keys read again.
    pub async fn reload(
        &self,
        caller: &Caller,
        request: ReloadRequest,
    ) -> Result<ReloadData, ServiceError> {
        self.admit(caller, &request)?;
        self.reloaded().await
    }

    /// Checks the request's fields, who may make it, and the per-user rate limit, before
    /// anything else is done for it.
    fn admit(&self, caller: &Caller, request: &impl Admitted) -> Result<(), ServiceError> {
        // Who may ask comes first: a caller who may not make the request learns nothing
        // of what is wrong with it (and an unauthenticated one is told so, not 400).
        access::authorize(&self.config.admin, caller, request)?;
        request.validate()?;
        match (&self.limiter, request.subject()) {
            (Some(limiter), Some(user)) => limiter.check(user),
            _ => Ok(()),
        }
    }

    async fn topped_up(&self, caller: &Caller, request: TopupRequest) -> Answer<Stored<TopupData>> {
        let fingerprint = request
            .idempotency_key
            .as_ref()
            .map(|_| request.fingerprint());
        let data = {
            let (user, amount) = (request.user.clone(), request.amount);
            move |changed: Changed| TopupData {
                user_id: user.clone(),
                amount,
                new_balance: changed.balance,
                welcome_grant: changed.welcome,
                replayed: false,
            }
        };
        // The admins' keys and the webhook's event ids are their own (see KeyOwner).
        let owner = match caller {
            Caller::Remote(Principal::Webhook) => KeyOwner::Webhook,
            _ => KeyOwner::Admins,
        };
        let key = request
            .idempotency_key
            .as_deref()
            .map(|sent| rules::scoped_key(owner, sent));
        let keyed = key
            .as_deref()
            .zip(fingerprint.as_deref())
            .map(|(key, fingerprint)| {
                let data = data.clone();
                Keyed {
                    idem: Idempotency { key, fingerprint },
                    reply: Box::new(move |changed| StoredReply::record(&data(changed))),
                }
            });
        // The ledger records who made the change when the caller says more than the
        // reason does (an admin key's name, a webhook).
        let reason = match (request.reason.as_deref(), caller.actor()) {
            (reason, None) => reason.map(str::to_string),
            (Some(reason), Some(actor)) => Some(format!("{reason} (by {actor})")),
            (None, Some(actor)) => Some(format!("by {actor}")),
        };
        let terms = match request.lot_terms(crate::domain::now_ms()) {
            Ok(terms) => terms,
            Err(refusal) => return Answer::ready(Err(refusal.into())),
        };
        let change = TopupChange {
            user: &request.user,
            amount: request.amount,
            terms,
            reason: reason.as_deref(),
            keyed,
        };
        match self.store.topup(change).await {
            Ok((Outcome::Applied(changed), commit)) => {
                let moved = match request.amount < 0 {
                    true => Tokens::Deducted,
                    false => Tokens::ToppedUp,
                };
                Answer::pending(Stored::Fresh(data(changed)), commit)
                    .moving(moved, request.amount.unsigned_abs())
            }
            Ok((Outcome::Replayed(stored), commit)) => match stored.replay() {
                Ok(replayed) => Answer::pending(Stored::Replayed(replayed), commit),
                Err(error) => Answer::ready(Err(error.into())),
            },
            Err(error) => Answer::ready(Err(error.into())),
        }
    }

    async fn held(&self, request: HoldRequest) -> Answer<Stored<HoldData>> {
        let ttl_ms = match request.ttl_ms() {
            Ok(ttl_ms) => ttl_ms,
            Err(refusal) => return Answer::ready(Err(refusal.into())),
        };
        let fingerprint = request.fingerprint();
        let key = hold_key(request.idempotency_key.as_deref());
        let change = HoldChange {
            user: &request.user,
            amount: request.amount,
            ttl_ms,
            keyed: hold_keyed(key.as_deref(), &fingerprint),
        };
        hold_answer(self.store.hold(change).await)
    }

    async fn refunded(&self, request: RefundRequest) -> Answer<Stored<RefundData>> {
        let fingerprint = request.fingerprint();
        // The admins' own key, as a hold op's.
        let key = hold_key(request.idempotency_key.as_deref());
        let change = RefundChange {
            entry: request.entry,
            user: request.user.as_deref(),
            amount: request.amount,
            keyed: key.as_deref().map(|key| KeyedAs {
                idem: Idempotency {
                    key,
                    fingerprint: &fingerprint,
                },
                reply: Box::new(|refunded| StoredReply::record(&refund_data(refunded))),
            }),
        };
        match self.store.refund(change).await {
            Ok((Outcome::Applied(refunded), commit)) => {
                Answer::pending(Stored::Fresh(refund_data(refunded)), commit)
            }
            Ok((Outcome::Replayed(stored), commit)) => match stored.replay() {
                Ok(replayed) => Answer::pending(Stored::Replayed(replayed), commit),
                Err(error) => Answer::ready(Err(error.into())),
            },
            Err(error) => Answer::ready(Err(error.into())),
        }
    }

    async fn captured(&self, request: CaptureRequest) -> Answer<Stored<HoldData>> {
        let fingerprint = request.fingerprint();
        let key = hold_key(request.idempotency_key.as_deref());
        let change = EndHold {
            hold: request.hold,
            user: request.user.as_deref(),
            end: HoldEnd::Capture {
                amount: request.amount,
            },
            memes: &[],
            keyed: hold_keyed(key.as_deref(), &fingerprint),
        };
        hold_answer(self.store.end_hold(change).await)
    }

    async fn voided(&self, request: VoidRequest) -> Answer<Stored<HoldData>> {
        let fingerprint = request.fingerprint();
        let key = hold_key(request.idempotency_key.as_deref());
        let change = EndHold {
            hold: request.hold,
            user: request.user.as_deref(),
            end: HoldEnd::Void,
            memes: &[],
            keyed: hold_keyed(key.as_deref(), &fingerprint),
        };
        hold_answer(self.store.end_hold(change).await)
    }

    async fn lots_of(&self, request: LotsRequest) -> Result<(LotsData, Commit), ServiceError> {
        let (lots, holds, commit) = self.store.lots(&request.user).await?;
        let data = LotsData {
            user_id: request.user,
            lots: lots.iter().map(protocol::LotView::from).collect(),
            holds: holds.iter().map(protocol::OpenHoldView::from).collect(),
        };
        Ok((data, commit))
    }

    async fn balance_of(
        &self,
        request: BalanceRequest,
    ) -> Result<(BalanceData, Commit), ServiceError> {
        let at = request.at_ms()?;
        let user = request.user;
        let now = now_ms();
        let (account, lots, stale, commit) = match at {
            None => {
                let (account, stale, commit) = self.store.read_account(&user).await?;
                (account, None, stale, commit)
            }
            Some(at) => {
                let (past, stale) = self.store.account_at(&user, at).await?;
                let lots = past.lots.iter().map(protocol::LotView::from).collect();
                (past.account, Some(lots), stale, Commit::done())
            }
        };
        let tier = account.tier_at(at.unwrap_or(now));
        let data = BalanceData {
            user_id: user,
            balance: account.balance,
            tier,
            tier_until: account
                .until
                .filter(|_| tier == Tier::Premium)
                .map(protocol::format_instant),
            stale,
            at: at.map(protocol::format_instant),
            projected: at.is_some_and(|at| at > now),
            lots,
        };
        Ok((data, commit))
    }

    async fn history_of(&self, request: HistoryRequest) -> Result<HistoryData, ServiceError> {
        let limit = request.limit.unwrap_or(protocol::MAX_HISTORY_PAGE) as usize;
        let before = request.before.as_deref().map(HistoryCursor::from_client);
        let page = self
            .store
            .history(&request.user, limit, before.as_ref())
            .await?;
        Ok(HistoryData {
            user_id: request.user,
            entries: page.entries,
            next: page.next.map(|cursor| cursor.as_str().to_string()),
            stale: page.stale,
        })
    }

    async fn entitled(
        &self,
        request: EntitleRequest,
    ) -> Result<(EntitleData, Commit), ServiceError> {
        let until = request.until_ms()?;
        if let (Some(until), Some(text)) = (until, &request.until)
            && until <= now_ms()
        {
            return Err(ServiceError::invalid(format!(
                "until {text} is in the past: an entitlement must end in the future (nothing was changed)"
            )));
        }
        let (account, commit) = self
            .store
            .entitle(&request.user, request.tier, until)
            .await?;
        let data = EntitleData {
            user_id: request.user,
            tier: account.tier,
            until: account.until.map(protocol::format_instant),
        };
        Ok((data, commit))
    }

    fn found(&self, request: SearchRequest) -> Found {
        let catalogue = self.catalogue.load_full();
        let ranked = catalogue.ranked(request.query.trim(), request.nsfw);
        let hits = ranked
            .hits
            .iter()
            .take(request.limit.unwrap_or(10) as usize)
            .copied()
            .collect();
        Found {
            catalogue,
            query: request.query,
            hits,
        }
    }

    fn nearest(&self, request: SimilarRequest) -> Result<Nearest, ServiceError> {
        let catalogue = self.catalogue.load_full();
        let index = catalogue.find(&request.meme).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::NotFound,
                format!("no meme has the id {:?}", request.meme),
            )
        })?;
        let hits = catalogue.similar(index, request.limit.unwrap_or(10) as usize, request.nsfw);
        Ok(Nearest {
            catalogue,
            meme_id: request.meme,
            hits,
        })
    }

    async fn status_now(&self) -> Result<StatusData, ServiceError> {
        let stats = self.store.stats().await?;
        Ok(StatusData {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: protocol::PROTOCOL_VERSION,
            uptime_secs: self.started.elapsed().as_secs_f64(),
            accounts: stats.accounts,
            memes: self.catalogue.load().len() as u64,
            entries: stats.entries,
            writable: stats.writable,
            unreachable: stats.unreachable.map(|lost| protocol::StatusUnreachable {
                store: lost.place,
                since: protocol::format_instant(lost.since_ms),
                for_secs: (now_ms() - lost.since_ms).max(0) as f64 / 1000.0,
                reason: lost.reason,
                counted_at: lost.counted_ms.map(protocol::format_instant),
            }),
        })
    }

    async fn audited(&self) -> Result<AuditReport, ServiceError> {
        Ok(self.store.audit().await?)
    }

    async fn reloaded(&self) -> Result<ReloadData, ServiceError> {
        let path = self.config.catalogue_path.clone();
        let keys = self.config.admin_keys.clone();
        let read = tokio::task::spawn_blocking(move || read_files(path.as_deref(), &keys))
            .await
            .map_err(|e| ServiceError::internal(format!("reloading: {e}")))?;
        self.install_files(read).map_err(ServiceError::invalid)
    }

    /// Where the request's coordinates are, if it has any (and the place data loaded; the
    /// first requests after start-up wait for it).
    pub fn locate(&self, lat: Option<f64>, long: Option<f64>) -> Option<Location> {
        let (lat, long) = lat.zip(long)?;
        self.geocoder
            .get_or_init(load_geocoder)
            .as_ref()
            .map(|geocoder| geocoder.locate(lat, long))
    }

    /// The catalogue in service now.
    pub fn catalogue(&self) -> arc_swap::Guard<Arc<Catalogue>> {
        self.catalogue.load()
    }

    /// The admin keys in service (shared with the HTTP fronts).
    pub fn admin_keys(&self) -> &AdminKeys {
        &self.config.admin_keys
    }

    /// Reloads what memesd reads from files, the catalogue and the admin keys, for SIGHUP
    /// and `reload`. Everything is read and checked before anything changes: on any
    /// problem the catalogue and the keys in service both stay, and the error (also
    /// logged) says what is wrong. Connections and balances are untouched either way.
    /// Blocking.
    pub fn reload_files(&self) -> Result<ReloadData, String> {
        self.install_files(read_files(
            self.config.catalogue_path.as_deref(),
            &self.config.admin_keys,
        ))
    }

    /// Puts what [`read_files`] read in service, or logs why nothing changes.
    fn install_files(
        &self,
        read: Result<(Catalogue, Option<ReadKeys>), String>,
    ) -> Result<ReloadData, String> {
        let (catalogue, keys) = match read {
            Ok(read) => read,
            Err(error) => {
                let error = format!(
                    "reload rejected, keeping the catalogue and the admin keys in service: {error}"
                );
                tracing::error!("{error}");
                return Err(error);
            }
        };
        let data = ReloadData {
            memes: catalogue.len() as u64,
            source: catalogue.origin().to_string(),
            admin_keys: keys.as_ref().map(|keys| keys.len() as u64),
        };
        tracing::info!(
            "catalogue reloaded: {} memes from {}",
            data.memes,
            data.source
        );
        telemetry::catalogue_loaded(catalogue.len());
        self.catalogue.store(Arc::new(catalogue));
        if let Some(keys) = keys {
            tracing::info!(
                "admin keys reloaded: {} from {}",
                keys.len(),
                self.config
                    .admin_keys
                    .path()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default()
            );
            self.config.admin_keys.install(keys);
        }
        Ok(data)
    }
}

/// Reads the catalogue and the admin keys for a reload, changing nothing yet.
fn read_files(
    catalogue: Option<&std::path::Path>,
    admin_keys: &AdminKeys,
) -> Result<(Catalogue, Option<ReadKeys>), String> {
    let catalogue = load_catalogue(catalogue)
        .map_err(|e| format!("the catalogue: {}", crate::causes::with_causes(&e)))?;
    let keys = admin_keys
        .read_again()
        .map_err(|e| format!("the admin keys: {e}"))?;
    Ok((catalogue, keys))
}

fn load_catalogue(path: Option<&std::path::Path>) -> Result<Catalogue, CatalogueError> {
    match path {
        Some(path) => Catalogue::from_file(path),
        None => Catalogue::embedded(),
    }
}

fn load_geocoder() -> Option<Geocoder> {
    match Geocoder::load() {
        Ok(geocoder) => Some(geocoder),
        Err(error) => {
            tracing::error!(
                "place data failed to load; replies will carry no location: {}",
                crate::causes::with_causes(&error)
            );
            None
        }
    }
}

/// A hold op's key as stored: the admins' own (see [`KeyOwner`]).
fn hold_key(sent: Option<&str>) -> Option<String> {
    sent.map(|sent| rules::scoped_key(KeyOwner::Admins, sent))
}

/// A hold op's key with the reply to store under it.
fn hold_keyed<'a>(key: Option<&'a str>, fingerprint: &'a str) -> Option<Keyed<'a>> {
    key.map(|key| Keyed {
        idem: Idempotency { key, fingerprint },
        reply: Box::new(|changed| StoredReply::record(&hold_data(changed))),
    })
}

/// A hold op's reply, from what its change did.
fn hold_data(changed: Changed) -> HoldData {
    let hold = changed.hold.unwrap_or(crate::store::HoldSummary {
        id: 0,
        amount: 0,
        captured: 0,
        returned: 0,
        state: crate::domain::HoldState::Open,
        expires_at: 0,
    });
    HoldData {
        hold: hold.id,
        state: hold.state,
        amount: hold.amount,
        captured: hold.captured,
        returned: hold.returned,
        expires_at: protocol::format_instant(hold.expires_at),
        new_balance: changed.balance,
        replayed: false,
    }
}

/// A refund's reply, from what it did.
fn refund_data(refunded: Refunded) -> RefundData {
    RefundData {
        refund: refunded.refund,
        reverses: refunded.reverses,
        refunded: refunded.refunded,
        returned: refunded.returned,
        left: refunded.left,
        new_balance: refunded.balance,
        replayed: false,
    }
}

/// The answer to a hold op, from what the store did.
fn hold_answer(
    outcome: Result<(Outcome<Changed>, Commit), StoreError>,
) -> Answer<Stored<HoldData>> {
    match outcome {
        Ok((Outcome::Applied(changed), commit)) => {
            Answer::pending(Stored::Fresh(hold_data(changed)), commit)
        }
        Ok((Outcome::Replayed(stored), commit)) => match stored.replay() {
            Ok(replayed) => Answer::pending(Stored::Replayed(replayed), commit),
            Err(error) => Answer::ready(Err(error.into())),
        },
        Err(error) => Answer::ready(Err(error.into())),
    }
}
