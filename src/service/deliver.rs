//! Charge-on-delivery, written once for plain and generated memes.
//!
//! A `get` is answered in this order: a keyed request that was seen before replays its
//! stored reply (nothing else is done); otherwise the goods are made ready — memes chosen
//! from the catalogue, or an image rendered and stored (premium only, and only for a user
//! who can pay for it) — and only then charged. The store decides the charge by the rules
//! of the money; a refused charge delivers nothing, and a failure before the charge charges
//! nothing. A generated image, which costs a render before it can be charged, goes through a
//! hold: its price is held before the render (so no concurrent charge can take it), captured
//! once the image is made, voided if the render fails. The memes a user was given are
//! remembered (for variety) once the charge is durable.

use super::reply::{Delivery, GetReply};
use super::{Answer, Caller, Service, ServiceError};
use crate::catalogue::select::Wanted;
use crate::domain::{ErrorCode, Tier, now_ms};
use crate::premium::{self, Made};
use crate::protocol::{GetData, GetRequest, Location, MAX_COUNT, MemeView};
use crate::store::{
    ChargeRequest, EndHold, HoldChange, HoldEnd, Idempotency, Keyed, Outcome, Replayed, StoreError,
    StoredReply, rules,
};

/// How long a generated meme's price is held: longer than any render may take (a render
/// that outlasts it finds its hold expired and is not charged).
const RENDER_HOLD_TTL_MS: i64 = 10 * 60 * 1000;
use crate::telemetry::Tokens;

/// What a `get` delivers, made ready before it is charged. The balance in it is filled in
/// once the charge is decided.
#[expect(
    clippy::large_enum_variant,
    reason = "the common case (memes) is the large one; it becomes the reply without a copy"
)]
enum Goods {
    Memes(Delivery),
    /// Boxed: rare, and large.
    Image(Box<GetData<()>>, Vec<u8>),
}

impl Goods {
    /// The reply for these goods, with the balance after the charge.
    fn into_reply(self, balance: u64, inline: bool) -> GetReply {
        match self {
            Goods::Memes(delivery) => GetReply::Memes(Delivery {
                balance,
                ..delivery
            }),
            Goods::Image(mut data, png) => {
                data.balance = balance;
                if inline && let Some(image) = &mut data.generated {
                    image.png_base64 = Some(premium::inline(&png));
                }
                GetReply::Generated(data)
            }
        }
    }

    /// The reply to store with an idempotency key (never with the image inline).
    fn stored_reply(&self) -> GetReply {
        match self {
            Goods::Memes(delivery) => GetReply::Memes(delivery.clone()),
            Goods::Image(data, _) => GetReply::Generated(data.clone()),
        }
    }
}

impl Service {
    pub(super) async fn delivered(&self, caller: &Caller, request: GetRequest) -> Answer<GetReply> {
        match self.deliver(caller, request).await {
            Ok(answer) => answer,
            Err(error) => Answer::ready(Err(error)),
        }
    }

    async fn deliver(
        &self,
        caller: &Caller,
        request: GetRequest,
    ) -> Result<Answer<GetReply>, ServiceError> {
        let token_premium = self
            .premium
            .verify_token(&request.user, request.token.as_deref())?;
        let claimed_premium = token_premium || caller.premium_by_credential();
        let fingerprint = request
            .idempotency_key
            .as_ref()
            .map(|_| request.fingerprint());
        // A get's key is the charged user's own (see KeyOwner).
        let key = request
            .idempotency_key
            .as_deref()
            .map(|sent| rules::scoped_key(rules::KeyOwner::User(&request.user), sent));
        let idem = key
            .as_deref()
            .zip(fingerprint.as_deref())
            .map(|(key, fingerprint)| Idempotency { key, fingerprint });
        if let Some(idem) = idem
            && let Some((stored, commit)) = self.store.replay(idem).await?
        {
            // Boxed, like the render below: rare paths whose futures are large must not make
            // every plain get's future (moved on each call) large too.
            let reply = Box::pin(self.replayed(stored, &request)).await?;
            return Ok(Answer::pending(reply, commit));
        }

        let location = self.locate(request.lat, request.long);
        let mut held = None;
        let goods = match request.generate {
            true => {
                let cost = self.premium_price(&request, claimed_premium).await?;
                held = Some(self.hold_price(&request.user, cost).await?);
                match Box::pin(self.render(&request, cost, location)).await {
                    Ok(goods) => goods,
                    Err(error) => {
                        if let Some(hold) = held {
                            self.give_back(hold, &request.user).await;
                        }
                        return Err(error);
                    }
                }
            }
            false => Goods::Memes(self.choose(&request, location)?),
        };
        // What was delivered, named in the ledger entry (at most MAX_COUNT memes: no
        // allocation on the way).
        let image_memo;
        let mut memo = [""; MAX_COUNT as usize];
        let (cost, delivered) = match &goods {
            Goods::Memes(delivery) => {
                for (slot, index) in memo.iter_mut().zip(&delivery.picked) {
                    *slot = delivery.catalogue.meme(*index).id.as_str();
                }
                (delivery.charged, delivery.picked.len())
            }
            Goods::Image(data, _) => {
                let sha256 = &data.generated.as_ref().expect("an image").sha256;
                image_memo = format!("generated:{}", &sha256[..16]);
                memo[0] = image_memo.as_str();
                (data.charged, 1)
            }
        };
        let keyed = idem.map(|idem| {
            let stored = goods.stored_reply();
            Keyed {
                idem,
                reply: Box::new(move |changed| {
                    StoredReply::record(&with_balance(stored.clone(), changed.balance))
                }),
            }
        });
        let (outcome, commit) = match held {
            Some(hold) => {
                let capture = EndHold {
                    hold,
                    user: Some(&request.user),
                    end: HoldEnd::Capture { amount: None },
                    memes: &memo[..delivered],
                    keyed,
                };
                let (outcome, commit) = match self.store.end_hold(capture).await {
                    Ok(captured) => captured,
                    Err(error) => {
                        self.give_back(hold, &request.user).await;
                        return Err(error.into());
                    }
                };
                (outcome.map(|changed| changed.balance), commit)
            }
            None => {
                let charge = ChargeRequest {
                    user: &request.user,
                    cost,
                    memes: &memo[..delivered],
                    keyed,
                };
                self.store.charge(charge).await?
            }
        };
        if let (Some(hold), Outcome::Replayed(_)) = (held, &outcome) {
            // Another request with the same key was captured first: this one's hold is not
            // needed.
            self.give_back(hold, &request.user).await;
        }
        match outcome {
            Outcome::Applied(balance) => {
                let remember = matches!(goods, Goods::Memes(_)).then(|| self.deliveries.clone());
                Ok(Answer {
                    outcome: Ok(goods.into_reply(balance, request.inline)),
                    commit,
                    remember,
                    moved: Some((Tokens::Charged, cost)),
                })
            }
            // Another request with the same key was applied first.
            Outcome::Replayed(stored) => {
                let reply = Box::pin(self.replayed(stored, &request)).await?;
                Ok(Answer::pending(reply, commit))
            }
        }
    }

    /// Memes from the catalogue for the request: its query, its place, variety.
    fn choose(
        &self,
        request: &GetRequest,
        location: Option<Location>,
    ) -> Result<Delivery, ServiceError> {
        let catalogue = self.catalogue.load_full();
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
        let picked = self
            .deliveries
            .choose(&catalogue, &request.user, &wanted)
            .map_err(|no_match| ServiceError::new(ErrorCode::NotFound, no_match.to_string()))?;
        Ok(Delivery {
            catalogue,
            picked,
            listed: request.count.is_some(),
            user_id: request.user.clone(),
            charged: self.config.meme_cost.saturating_mul(count as u64),
            balance: 0,
            location,
        })
    }

    /// The price of a generated image, for a premium user who can pay for it.
    async fn premium_price(
        &self,
        request: &GetRequest,
        claimed_premium: bool,
    ) -> Result<u64, ServiceError> {
        let account = match self.store.account(&request.user).await {
            Ok((account, _)) => Some(account),
            Err(StoreError::UnknownUser(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let entitled = account.is_some_and(|a| a.tier_at(now_ms()) == Tier::Premium);
        if !claimed_premium && !entitled {
            return Err(ServiceError::not_allowed(format!(
                "generated memes are for premium users; {:?} is on the free tier (nothing was charged)",
                request.user
            )));
        }
        let cost = self.premium.cost();
        if let Some(account) = &account {
            // Refuse before spending a render on a request that cannot be paid for.
            rules::affordable(&request.user, account, cost)?;
        }
        Ok(cost)
    }

    /// Holds a generated image's price (opening the account if it is new): the hold's id.
    async fn hold_price(&self, user: &str, cost: u64) -> Result<u64, ServiceError> {
        let change = HoldChange {
            user,
            amount: cost,
            ttl_ms: RENDER_HOLD_TTL_MS,
            keyed: None,
        };
        let (outcome, commit) = self.store.hold(change).await?;
        commit.wait().await?;
        match outcome {
            Outcome::Applied(changed) => changed
                .hold
                .map(|hold| hold.id)
                .ok_or_else(|| ServiceError::new(ErrorCode::Internal, "a hold without its id")),
            Outcome::Replayed(_) => Err(ServiceError::new(
                ErrorCode::Internal,
                "an unkeyed hold was replayed",
            )),
        }
    }

    /// Voids a hold whose render failed or was not needed. Should that fail, the hold still
    /// gives everything back at its expiry: nothing is charged either way.
    async fn give_back(&self, hold: u64, user: &str) {
        let void = EndHold {
            hold,
            user: Some(user),
            end: HoldEnd::Void,
            memes: &[],
            keyed: None,
        };
        let voided = match self.store.end_hold(void).await {
            Ok((_, commit)) => commit.wait().await,
            Err(error) => Err(error),
        };
        if let Err(error) = voided {
            tracing::warn!("hold {hold} of {user:?} was not voided ({error}); it expires instead");
        }
    }

    /// A generated image, made for `cost` tokens.
    async fn render(
        &self,
        request: &GetRequest,
        cost: u64,
        location: Option<Location>,
    ) -> Result<Goods, ServiceError> {
        let query = request.query.as_deref();
        let plan = self.premium.plan(query, location.as_ref());
        let Made { image, png } = self
            .premium
            .make(&request.user, query, &plan, location.as_ref())
            .await?;
        let data = GetData {
            user_id: request.user.clone(),
            meme: None,
            memes: None,
            generated: Some(image),
            charged: cost,
            balance: 0,
            location,
            replayed: false,
        };
        Ok(Goods::Image(Box::new(data), png))
    }

    /// A stored reply, replayed for `request`. A generated image is made sure to be on this
    /// host, and included if the request asks for it inline.
    async fn replayed(
        &self,
        stored: StoredReply,
        request: &GetRequest,
    ) -> Result<GetReply, ServiceError> {
        let replayed = stored.replay::<GetData<MemeView>>()?;
        let Some(image) = replayed
            .data()
            .generated
            .as_ref()
            .filter(|_| request.generate)
        else {
            return Ok(GetReply::Replayed(Box::new(replayed)));
        };
        let mut restored = image.clone();
        let png = self.premium.restore(&mut restored).await?;
        if restored == *image && !request.inline {
            return Ok(GetReply::Replayed(Box::new(replayed)));
        }
        // The reply must point at this host's copy of the image (another host may have
        // rendered it), or carry it: it can no longer be the stored bytes.
        if request.inline {
            restored.png_base64 = Some(premium::inline(&png));
        }
        let mut data = replayed.into_data();
        data.generated = Some(restored);
        Ok(GetReply::Replayed(Box::new(Replayed::rewritten(data))))
    }
}

/// The reply with the balance after the charge, for storing with its key.
fn with_balance(reply: GetReply, balance: u64) -> GetReply {
    match reply {
        GetReply::Memes(delivery) => GetReply::Memes(Delivery {
            balance,
            ..delivery
        }),
        GetReply::Generated(data) => GetReply::Generated(Box::new(GetData { balance, ..*data })),
        replayed => replayed,
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
