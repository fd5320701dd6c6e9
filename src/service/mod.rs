//! The service: one typed call per request, whatever front it came through.
//!
//! A front parses its wire format into a [`Request`] and a [`Caller`], calls
//! [`Service::call`] (or [`Service::submit`] to pipeline), and encodes the [`Reply`] or the
//! [`ServiceError`]. The service checks the request, decides access on the caller, applies
//! the rate limit, and orchestrates the work: catalogue choice, premium images, and the
//! charge, which the store decides by the rules of the money. It knows no wire format and
//! holds no balance.
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

pub use access::{AdminPolicy, Caller, Peer, Principal};
pub use admin_keys::AdminKeys;
use admin_keys::ReadKeys;
pub use error::ServiceError;
pub use reply::{Delivery, Found, GetReply, Nearest, Reply, Stored};

use crate::catalogue::location::Geocoder;
use crate::catalogue::select::Deliveries;
use crate::catalogue::{Catalogue, CatalogueError};
use crate::domain::{ErrorCode, HistoryCursor, Tier, now_ms};
use crate::premium::Premium;
use crate::premium::claims::Claims;
use crate::protocol::{
    self, BalanceData, EntitleData, EntitleRequest, HistoryData, HistoryRequest, Location,
    ReloadData, Request, SearchRequest, SimilarRequest, StatusData, TopupData, TopupRequest,
};
use crate::store::rules::{self, KeyOwner};
use crate::store::{Changed, Commit, Idempotency, Keyed, Outcome, TokenStore, TopupChange};
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

/// A request's outcome, possibly still waiting for its change to be durable.
///
/// [`Service::submit`] returns as soon as a request is applied; the answer settles once the
/// change it reports is durable. A front that pipelines (the socket) reads the next request
/// meanwhile, which is what lets many changes share one disk flush.
#[must_use = "an answer is only final once settled"]
pub struct Answer {
    outcome: Result<Reply, ServiceError>,
    commit: Commit,
    /// Where to remember the memes a delivery gave its user (for variety), once the charge
    /// is durable.
    remember: Option<Arc<Deliveries>>,
    /// Tokens the change moved, counted once it is durable.
    moved: Option<(Tokens, u64)>,
}

impl Answer {
    fn ready(outcome: Result<Reply, ServiceError>) -> Answer {
        Answer {
            outcome,
            commit: Commit::done(),
            remember: None,
            moved: None,
        }
    }

    fn pending(reply: Reply, commit: Commit) -> Answer {
        Answer {
            outcome: Ok(reply),
            commit,
            remember: None,
            moved: None,
        }
    }

    /// Counts the tokens the change moved once it is durable.
    fn moving(mut self, kind: Tokens, amount: u64) -> Answer {
        self.moved = Some((kind, amount));
        self
    }

    /// The final outcome: the reply once its change is durable, or `unavailable` if the
    /// change could not be made durable (it was then taken back).
    pub async fn settle(self) -> Result<Reply, ServiceError> {
        self.commit.wait().await?;
        if let Some((kind, amount)) = self.moved {
            telemetry::tokens(kind, amount);
        }
        if let (Some(deliveries), Ok(Reply::Get(GetReply::Memes(delivery)))) =
            (&self.remember, &self.outcome)
        {
            let catalogue = &delivery.catalogue;
            let keys = delivery.picked.iter().map(|i| catalogue.delivery_key(*i));
            deliveries.record(&delivery.user_id, keys);
        }
        self.outcome
    }
}

impl From<Result<(Reply, Commit), ServiceError>> for Answer {
    fn from(result: Result<(Reply, Commit), ServiceError>) -> Answer {
        match result {
            Ok((reply, commit)) => Answer::pending(reply, commit),
            Err(error) => Answer::ready(Err(error)),
        }
    }
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

    /// Handles one request for `caller`: the reply, once any change it reports is durable.
    pub async fn call(&self, caller: &Caller, request: Request) -> Result<Reply, ServiceError> {
        self.submit(caller, request).await.settle().await
    }

    /// Handles one request for `caller` up to the point where it is applied; the answer
    /// settles once it is durable. Requests submitted one after another by the same front
    /// are applied in that order.
    pub async fn submit(&self, caller: &Caller, request: Request) -> Answer {
        if let Err(error) = self.admit(caller, &request) {
            return Answer::ready(Err(error));
        }
        match request {
            Request::Get(get) => self.get(caller, get).await,
            Request::Topup(topup) => self.topup(caller, topup).await,
            Request::Balance(balance) => self.balance(balance.user).await.into(),
            Request::Entitle(entitle) => self.entitle(entitle).await.into(),
            Request::History(history) => Answer::ready(self.history(history).await),
            Request::Status(_) => Answer::ready(self.status().await),
            Request::Search(search) => Answer::ready(Ok(self.search(search))),
            Request::Similar(similar) => Answer::ready(self.similar(similar)),
            Request::Audit(_) => Answer::ready(match self.store.audit().await {
                Ok(report) => Ok(Reply::Audit(report)),
                Err(error) => Err(error.into()),
            }),
            Request::Reload(_) => Answer::ready(self.reload().await),
        }
    }

    /// Checks the request's fields, who may make it, and the per-user rate limit, before
    /// anything else is done for it.
    fn admit(&self, caller: &Caller, request: &Request) -> Result<(), ServiceError> {
        request.validate()?;
        access::authorize(&self.config.admin, caller, request)?;
        let user = match request {
            Request::Get(r) => Some(&r.user),
            Request::Balance(r) => Some(&r.user),
            Request::History(r) => Some(&r.user),
            _ => None,
        };
        match (&self.limiter, user) {
            (Some(limiter), Some(user)) => limiter.check(user),
            _ => Ok(()),
        }
    }

    async fn topup(&self, caller: &Caller, request: TopupRequest) -> Answer {
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
                    reply: Box::new(move |changed| raw(&data(changed))),
                }
            });
        // The ledger records who made the change when the caller says more than the
        // reason does (an admin key's name, a webhook).
        let reason = match (request.reason.as_deref(), caller.actor()) {
            (reason, None) => reason.map(str::to_string),
            (Some(reason), Some(actor)) => Some(format!("{reason} (by {actor})")),
            (None, Some(actor)) => Some(format!("by {actor}")),
        };
        let change = TopupChange {
            user: &request.user,
            amount: request.amount,
            reason: reason.as_deref(),
            keyed,
        };
        match self.store.topup(change).await {
            Ok((Outcome::Applied(changed), commit)) => {
                let moved = match request.amount < 0 {
                    true => Tokens::Deducted,
                    false => Tokens::ToppedUp,
                };
                Answer::pending(Reply::Topup(Stored::Fresh(data(changed))), commit)
                    .moving(moved, request.amount.unsigned_abs())
            }
            Ok((Outcome::Replayed(stored), commit)) => {
                let reply = reply::replayed(&stored);
                Answer::pending(Reply::Topup(Stored::Replayed(reply)), commit)
            }
            Err(error) => Answer::ready(Err(error.into())),
        }
    }

    async fn balance(&self, user: String) -> Result<(Reply, Commit), ServiceError> {
        let (account, commit) = self.store.account(&user).await?;
        let tier = account.tier_at(now_ms());
        let data = BalanceData {
            user_id: user,
            balance: account.balance,
            tier,
            tier_until: account
                .until
                .filter(|_| tier == Tier::Premium)
                .map(protocol::format_instant),
        };
        Ok((Reply::Balance(data), commit))
    }

    async fn history(&self, request: HistoryRequest) -> Result<Reply, ServiceError> {
        let limit = request.limit.unwrap_or(protocol::MAX_HISTORY_PAGE) as usize;
        let before = request.before.as_deref().map(HistoryCursor::from_client);
        let page = self
            .store
            .history(&request.user, limit, before.as_ref())
            .await?;
        Ok(Reply::History(HistoryData {
            user_id: request.user,
            entries: page.entries,
            next: page.next.map(|cursor| cursor.as_str().to_string()),
        }))
    }

    async fn entitle(&self, request: EntitleRequest) -> Result<(Reply, Commit), ServiceError> {
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
        Ok((Reply::Entitle(data), commit))
    }

    fn search(&self, request: SearchRequest) -> Reply {
        let catalogue = self.catalogue.load_full();
        let ranked = catalogue.ranked(request.query.trim(), request.nsfw);
        let hits = ranked
            .hits
            .iter()
            .take(request.limit.unwrap_or(10) as usize)
            .copied()
            .collect();
        Reply::Search(Found {
            catalogue,
            query: request.query,
            hits,
        })
    }

    fn similar(&self, request: SimilarRequest) -> Result<Reply, ServiceError> {
        let catalogue = self.catalogue.load_full();
        let index = catalogue.find(&request.meme).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::NotFound,
                format!("no meme has the id {:?}", request.meme),
            )
        })?;
        let hits = catalogue.similar(index, request.limit.unwrap_or(10) as usize, request.nsfw);
        Ok(Reply::Similar(Nearest {
            catalogue,
            meme_id: request.meme,
            hits,
        }))
    }

    async fn status(&self) -> Result<Reply, ServiceError> {
        let stats = self.store.stats().await?;
        Ok(Reply::Status(StatusData {
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
        }))
    }

    async fn reload(&self) -> Result<Reply, ServiceError> {
        let path = self.config.catalogue_path.clone();
        let keys = self.config.admin_keys.clone();
        let read = tokio::task::spawn_blocking(move || read_files(path.as_deref(), &keys))
            .await
            .map_err(|e| ServiceError::internal(format!("reloading: {e}")))?;
        self.install_files(read)
            .map(Reply::Reload)
            .map_err(ServiceError::invalid)
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

/// Serialises reply data for storing with an idempotency key.
fn raw<T: serde::Serialize>(data: &T) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(data).expect("reply data serialises")
}
