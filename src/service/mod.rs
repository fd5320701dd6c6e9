//! From a request line to a reply: parsing, permission and rate checks, and each
//! operation's work against the store, the catalogue and the premium features.
//!
//! Most operations finish synchronously (a lock, a lookup, a few microseconds) and hand back
//! their reply together with the store's [`Commit`]; the connection sends the reply once the
//! commit is durable and meanwhile goes on with the next request. Operations that read files
//! or render images run on the blocking pool and are awaited in request order.

pub mod access;
pub mod ratelimit;

use crate::catalogue::location::Geocoder;
use crate::catalogue::select::{Deliveries, Wanted};
use crate::catalogue::{Catalogue, CatalogueError};
use crate::premium::Premium;
use crate::protocol::{
    self, BalanceData, EntitleData, EntitleRequest, ErrorBody, ErrorCode, GetData, GetRequest,
    HistoryCursor, HistoryData, Location, ReloadData, Request, SearchData, SearchHit,
    SearchRequest, StatusData, Tier, TopupData, TopupRequest,
};
use crate::store::{ChargeRequest, Commit, Idempotency, Outcome, TokenStore, TopupChange, now_ms};
use access::{AdminPolicy, Peer};
use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use ratelimit::RateLimit;
use serde::Serialize;
use serde_json::value::RawValue;
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
    /// Requests per second allowed per user (token bucket), if limited.
    pub rate_limit: Option<u32>,
}

/// A reply on its way out: its bytes, and the commit that must be durable before it is sent.
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub commit: Commit,
    /// The request id, kept only while the commit is pending (to word an error instead).
    id: Option<Box<RawValue>>,
}

impl Outgoing {
    /// A reply that needs nothing more.
    pub fn immediate(bytes: Vec<u8>) -> Outgoing {
        Outgoing {
            bytes,
            commit: Commit::done(),
            id: None,
        }
    }

    /// The bytes to send once the commit resolved: the reply, or `unavailable` if the
    /// change could not be made durable (and was taken back).
    pub async fn settle(self) -> Vec<u8> {
        match self.commit.wait().await {
            Ok(()) => self.bytes,
            Err(error) => {
                let mut out = Vec::new();
                protocol::encode_error(&mut out, self.id.as_deref(), &error.into());
                out
            }
        }
    }
}

/// The result of handling a line: a reply now, or work to await (in order) first.
pub enum Handled {
    Ready(Outgoing),
    Later(BoxFuture<'static, Outgoing>),
}

/// Everything a request may need, shared by all connections.
pub struct Service {
    store: Arc<dyn TokenStore>,
    catalogue: ArcSwap<Catalogue>,
    deliveries: Deliveries,
    geocoder: Arc<OnceLock<Option<Geocoder>>>,
    premium: Premium,
    limiter: Option<RateLimit>,
    config: ServiceConfig,
    started: Instant,
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
        Service {
            store,
            catalogue: ArcSwap::from_pointee(catalogue),
            deliveries: Deliveries::default(),
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

    /// Handles one request line (without its newline).
    pub fn handle(self: &Arc<Self>, line: &[u8], peer: &Peer) -> Handled {
        let incoming = protocol::parse_line(line);
        let id = incoming.id;
        let request = match incoming.request {
            Ok(request) => request,
            Err(error) => return Handled::Ready(reply_error(id, &error)),
        };
        if let Err(error) = self.permit(&request, peer) {
            return Handled::Ready(reply_error(id, &error));
        }
        match request {
            Request::Get(get) if get.generate => {
                let (this, id) = (self.clone(), id.map(ToOwned::to_owned));
                Handled::Later(Box::pin(async move { this.generate(id, get).await }))
            }
            Request::Get(get) => Handled::Ready(self.get(id, &get)),
            Request::Topup(topup) => Handled::Ready(self.topup(id, &topup)),
            Request::Balance(balance) => Handled::Ready(self.balance(id, &balance.user)),
            Request::Status(_) => Handled::Ready(self.status(id)),
            Request::Search(search) => Handled::Ready(self.search(id, &search)),
            Request::Entitle(entitle) => Handled::Ready(self.entitle(id, &entitle)),
            Request::History(history) => {
                let store = self.store.clone();
                self.blocking(id, move || {
                    let limit = history.limit.unwrap_or(protocol::MAX_HISTORY_PAGE) as usize;
                    // Validated with the request, so the cursor parses.
                    let before = history
                        .before
                        .as_deref()
                        .map(HistoryCursor::parse)
                        .transpose()?;
                    let page = store.history(&history.user, limit, before)?;
                    Ok::<_, ErrorBody>(HistoryData {
                        user_id: history.user,
                        entries: page.entries,
                        next: page.next.map(|cursor| cursor.to_string()),
                    })
                })
            }
            Request::Audit(_) => {
                let store = self.store.clone();
                self.blocking(id, move || store.audit())
            }
            Request::Reload(_) => {
                let this = self.clone();
                self.blocking(id, move || {
                    this.reload_catalogue()
                        .map_err(|e| ErrorBody::invalid(e.to_string()))
                })
            }
        }
    }

    /// The complete reply line for one request line, once it is durable: what a connection
    /// sends, in one call (for tests and fuzzing; connections pipeline instead).
    pub async fn respond(self: &Arc<Self>, line: &[u8], peer: &Peer) -> Vec<u8> {
        let outgoing = match self.handle(line, peer) {
            Handled::Ready(outgoing) => outgoing,
            Handled::Later(work) => work.await,
        };
        outgoing.settle().await
    }

    /// Admin-only operations and the per-user rate limit.
    fn permit(&self, request: &Request, peer: &Peer) -> Result<(), ErrorBody> {
        let admin_only = matches!(
            request,
            Request::Topup(_) | Request::Entitle(_) | Request::Audit(_) | Request::Reload(_)
        );
        if admin_only && !self.config.admin.is_admin(peer) {
            return Err(ErrorBody::new(
                ErrorCode::NotAllowed,
                format!(
                    "{} is an admin operation (allowed: memesd's own user, root, --admin-uid, --admin-group)",
                    request.op()
                ),
            ));
        }
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

    fn get(&self, id: Option<&RawValue>, request: &GetRequest) -> Outgoing {
        if let Err(error) = self.premium.verify_token(request) {
            return reply_error(id, &error);
        }
        let fingerprint = request
            .idempotency_key
            .as_ref()
            .map(|_| fingerprint(request));
        let idem = request
            .idempotency_key
            .as_deref()
            .zip(fingerprint.as_deref())
            .map(|(key, fingerprint)| Idempotency { key, fingerprint });
        if let Some(idem) = &idem {
            match self.store.replay(idem) {
                Ok(Some((reply, commit))) => return reply_ok(id, &*reply, commit),
                Ok(None) => {}
                Err(error) => return reply_error(id, &error.into()),
            }
        }
        let catalogue = self.catalogue.load();
        let location = self.locate(request);
        let place = place_codes(location.as_ref());
        let place: Vec<&str> = place.iter().map(String::as_str).collect();
        let count = request.count.unwrap_or(1) as usize;
        let wanted = Wanted {
            query: request
                .query
                .as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty()),
            count,
            nsfw: request.nsfw,
            place: &place,
        };
        let picked = match self.deliveries.choose(&catalogue, &request.user, &wanted) {
            Ok(picked) => picked,
            Err(no_match) => {
                return reply_error(
                    id,
                    &ErrorBody::new(ErrorCode::NotFound, no_match.to_string()),
                );
            }
        };
        let ids: Vec<&str> = picked
            .iter()
            .map(|i| catalogue.meme(*i).id.as_str())
            .collect();
        let cost = self.config.meme_cost.saturating_mul(count as u64);
        let data = |balance: u64| GetData::<&RawValue> {
            user_id: request.user.clone(),
            meme: request.count.is_none().then(|| catalogue.view(picked[0])),
            memes: request
                .count
                .map(|_| picked.iter().map(|i| catalogue.view(*i)).collect()),
            generated: None,
            charged: cost,
            balance,
            location: location.clone(),
        };
        let stored = |balance: u64| raw(&data(balance));
        let charge = ChargeRequest {
            user: &request.user,
            cost,
            memes: &ids,
            keyed: idem.map(|idem| (idem, &stored as &dyn Fn(u64) -> Box<RawValue>)),
        };
        match self.store.charge(&charge) {
            Ok((Outcome::Applied(balance), commit)) => {
                let keys: Vec<u64> = picked.iter().map(|i| catalogue.delivery_key(*i)).collect();
                self.deliveries.record(&request.user, &keys);
                reply_ok(id, &data(balance), commit)
            }
            Ok((Outcome::Replayed(reply), commit)) => reply_ok(id, &*reply, commit),
            Err(error) => reply_error(id, &error.into()),
        }
    }

    fn topup(&self, id: Option<&RawValue>, request: &TopupRequest) -> Outgoing {
        let fingerprint = request.idempotency_key.as_ref().map(|_| {
            let canonical = TopupRequest {
                idempotency_key: None,
                ..request.clone()
            };
            serde_json::to_string(&Request::Topup(canonical)).expect("request serialises")
        });
        let data = |balance: u64| TopupData {
            user_id: request.user.clone(),
            amount: request.amount,
            new_balance: balance,
        };
        let stored = |balance: u64| raw(&data(balance));
        let change = TopupChange {
            user: &request.user,
            amount: request.amount,
            reason: request.reason.as_deref(),
            keyed: request
                .idempotency_key
                .as_deref()
                .zip(fingerprint.as_deref())
                .map(|(key, fingerprint)| {
                    (
                        Idempotency { key, fingerprint },
                        &stored as &dyn Fn(u64) -> Box<RawValue>,
                    )
                }),
        };
        match self.store.topup(&change) {
            Ok((Outcome::Applied(balance), commit)) => reply_ok(id, &data(balance), commit),
            Ok((Outcome::Replayed(reply), commit)) => reply_ok(id, &*reply, commit),
            Err(error) => reply_error(id, &error.into()),
        }
    }

    fn balance(&self, id: Option<&RawValue>, user: &str) -> Outgoing {
        match self.store.account(user) {
            Ok((account, commit)) => {
                let tier = account.tier_at(now_ms());
                let data = BalanceData {
                    user_id: user.to_string(),
                    balance: account.balance,
                    tier,
                    tier_until: account
                        .until
                        .filter(|_| tier == Tier::Premium)
                        .map(protocol::format_instant),
                };
                reply_ok(id, &data, commit)
            }
            Err(error) => reply_error(id, &error.into()),
        }
    }

    fn entitle(&self, id: Option<&RawValue>, request: &EntitleRequest) -> Outgoing {
        let until = match request.until_ms() {
            Ok(until) => until,
            Err(error) => return reply_error(id, &error),
        };
        match self.store.entitle(&request.user, request.tier, until) {
            Ok((account, commit)) => {
                let data = EntitleData {
                    user_id: request.user.clone(),
                    tier: account.tier,
                    until: account.until.map(protocol::format_instant),
                };
                reply_ok(id, &data, commit)
            }
            Err(error) => reply_error(id, &error.into()),
        }
    }

    fn search(&self, id: Option<&RawValue>, request: &SearchRequest) -> Outgoing {
        let catalogue = self.catalogue.load();
        let ranked = catalogue.ranked(request.query.trim(), request.nsfw);
        let data = SearchData {
            query: request.query.clone(),
            hits: ranked
                .hits
                .iter()
                .take(request.limit.unwrap_or(10) as usize)
                .map(|hit| SearchHit {
                    score: hit.score,
                    meme: catalogue.view(hit.doc),
                })
                .collect(),
        };
        reply_ok(id, &data, Commit::done())
    }

    fn status(&self, id: Option<&RawValue>) -> Outgoing {
        let stats = self.store.stats();
        let data = StatusData {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: protocol::PROTOCOL_VERSION,
            uptime_secs: self.started.elapsed().as_secs_f64(),
            accounts: stats.accounts,
            memes: self.catalogue.load().len() as u64,
            entries: stats.entries,
            writable: stats.writable,
        };
        reply_ok(id, &data, Commit::done())
    }

    /// Where the request's coordinates are, if it has any (and the place data loaded).
    pub fn locate(&self, request: &GetRequest) -> Option<Location> {
        let (lat, long) = request.lat.zip(request.long)?;
        self.geocoder
            .get_or_init(load_geocoder)
            .as_ref()
            .map(|geocoder| geocoder.locate(lat, long))
    }

    /// The catalogue in service now.
    pub fn catalogue(&self) -> arc_swap::Guard<Arc<Catalogue>> {
        self.catalogue.load()
    }

    /// Reloads the catalogue from its file and swaps it in; on any problem the current one
    /// stays in service. Connections and balances are untouched either way.
    pub fn reload_catalogue(&self) -> Result<ReloadData, CatalogueError> {
        let loaded = match &self.config.catalogue_path {
            Some(path) => Catalogue::from_file(path),
            None => Catalogue::embedded(),
        };
        match loaded {
            Ok(catalogue) => {
                let data = ReloadData {
                    memes: catalogue.len() as u64,
                    source: catalogue.origin().to_string(),
                };
                tracing::info!(
                    "catalogue reloaded: {} memes from {}",
                    data.memes,
                    data.source
                );
                self.catalogue.store(Arc::new(catalogue));
                Ok(data)
            }
            Err(error) => {
                tracing::error!("catalogue reload rejected, keeping the current one: {error}");
                Err(error)
            }
        }
    }

    /// Runs blocking work (file reads) off the async threads; its reply keeps its place.
    fn blocking<T: Serialize + Send + 'static, E: Into<ErrorBody> + Send + 'static>(
        &self,
        id: Option<&RawValue>,
        work: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Handled {
        let id = id.map(ToOwned::to_owned);
        Handled::Later(Box::pin(async move {
            let outcome = tokio::task::spawn_blocking(work).await;
            match outcome {
                Ok(Ok(data)) => reply_ok(id.as_deref(), &data, Commit::done()),
                Ok(Err(error)) => reply_error(id.as_deref(), &error.into()),
                Err(panicked) => reply_error(
                    id.as_deref(),
                    &ErrorBody::new(ErrorCode::Internal, format!("request failed: {panicked}")),
                ),
            }
        }))
    }

    /// `get` with `generate`: premium only; see [`crate::premium`].
    async fn generate(self: Arc<Self>, id: Option<Box<RawValue>>, request: GetRequest) -> Outgoing {
        let location = self.locate(&request);
        let fingerprint = fingerprint(&request);
        match self
            .premium
            .generate(self.store.as_ref(), &request, location, &fingerprint)
            .await
        {
            Ok((data, commit)) => reply_ok(id.as_deref(), &data, commit),
            Err(error) => reply_error(id.as_deref(), &error),
        }
    }
}

fn load_geocoder() -> Option<Geocoder> {
    match Geocoder::load() {
        Ok(geocoder) => Some(geocoder),
        Err(error) => {
            tracing::error!("place data failed to load; replies will carry no location: {error}");
            None
        }
    }
}

/// ISO codes of a place, for preferring memes of that country or subdivision.
fn place_codes(location: Option<&Location>) -> Vec<String> {
    match location {
        Some(place) if !place.at_sea => std::iter::once(place.country_code.clone())
            .chain(place.region_code.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// The canonical form of a keyed request: what must match for a retry to be a retry.
/// The key itself, the credentials and the reply's presentation are not part of it.
pub fn fingerprint(request: &GetRequest) -> String {
    let canonical = GetRequest {
        idempotency_key: None,
        token: None,
        inline: false,
        ..request.clone()
    };
    serde_json::to_string(&Request::Get(canonical)).expect("request serialises")
}

fn raw<T: Serialize>(data: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(data).expect("reply data serialises")
}

fn reply_ok<T: Serialize + ?Sized>(id: Option<&RawValue>, data: &T, commit: Commit) -> Outgoing {
    // A `get` reply with its meme is 300-400 bytes; start big enough for it.
    let mut bytes = Vec::with_capacity(512);
    protocol::encode_ok(&mut bytes, id, &data);
    let id = match commit.is_done() {
        true => None,
        false => id.map(ToOwned::to_owned),
    };
    Outgoing { bytes, commit, id }
}

fn reply_error(id: Option<&RawValue>, error: &ErrorBody) -> Outgoing {
    let mut bytes = Vec::with_capacity(128);
    protocol::encode_error(&mut bytes, id, error);
    Outgoing::immediate(bytes)
}
