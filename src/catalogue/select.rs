//! Which memes a user gets for a request: the best matches for the query, memes of the
//! user's own country first, and variety, so that asking the same thing again brings a
//! different good match until the good matches are used up.
//!
//! Variety needs memory of what each user was recently given. It is bounded: the last
//! [`RECENT_PER_USER`] deliveries for each of the [`RECENT_USERS`] most recently active users;
//! older memory is forgotten, never grows. It is a courtesy, not a record: the ledger keeps
//! what was charged.

use super::Catalogue;
use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Deliveries remembered per user.
pub const RECENT_PER_USER: usize = 24;
/// Users whose recent deliveries are remembered.
pub const RECENT_USERS: usize = 65_536;
/// A ranked match is a "good" match if it scores at least this share of the best one.
const GOOD_SHARE: f32 = 0.5;

/// Why nothing can be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoMatch {
    #[error("no meme matches {0:?}")]
    Nothing(String),
    #[error("only {available} memes match {query:?}, {wanted} were asked for")]
    TooFew {
        query: String,
        available: usize,
        wanted: usize,
    },
}

/// What a request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// A non-empty query, or `None` for any meme.
    pub query: Option<&'a str>,
    pub count: usize,
    pub nsfw: bool,
    /// ISO codes of where the user is (country, subdivision), preferred when they match.
    pub place: &'a [&'a str],
}

/// Recent deliveries per user, for variety.
pub struct Deliveries {
    recent: Mutex<lru::LruCache<Box<str>, VecDeque<u64>>>,
    /// Spreads requests without a query over the catalogue.
    rotation: AtomicU64,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            recent: Mutex::new(lru::LruCache::new(
                RECENT_USERS.try_into().expect("non-zero"),
            )),
            rotation: AtomicU64::new(0),
        }
    }
}

impl Deliveries {
    /// Chooses `wanted.count` distinct memes for `user`, best first.
    pub fn choose(
        &self,
        catalogue: &Catalogue,
        user: &str,
        wanted: &Wanted,
    ) -> Result<Vec<u32>, NoMatch> {
        let regional = |index: &u32| {
            let meme = catalogue.meme(*index);
            meme.regions
                .iter()
                .any(|r| wanted.place.contains(&r.as_str()))
        };
        let mut order: Vec<u32>;
        match wanted.query {
            Some(query) => {
                let hits = catalogue.ranked(query, wanted.nsfw);
                let Some(best) = hits.first() else {
                    return Err(NoMatch::Nothing(query.to_string()));
                };
                let good = hits
                    .iter()
                    .take_while(|h| h.score >= best.score * GOOD_SHARE)
                    .count();
                let (good, rest) = hits.split_at(good);
                order = Vec::with_capacity(hits.len());
                for tier in [good, rest] {
                    // Within each tier, memes of the user's place first; ranking otherwise kept.
                    order.extend(tier.iter().map(|h| h.doc).filter(&regional));
                    order.extend(tier.iter().map(|h| h.doc).filter(|d| !regional(d)));
                }
            }
            None => {
                let pool: Vec<u32> = match wanted.nsfw {
                    true => (0..catalogue.len() as u32).collect(),
                    false => catalogue.safe().to_vec(),
                };
                let start = (self
                    .rotation
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    >> 32) as usize
                    % pool.len().max(1);
                let rotated = pool[start..].iter().chain(&pool[..start]);
                order = rotated.clone().copied().filter(&regional).collect();
                order.extend(rotated.copied().filter(|d| !regional(d)));
            }
        }
        if order.len() < wanted.count {
            return Err(NoMatch::TooFew {
                query: wanted.query.unwrap_or("").to_string(),
                available: order.len(),
                wanted: wanted.count,
            });
        }
        let recent = self.recent_of(user);
        let keys: Vec<u64> = order
            .iter()
            .map(|i| delivery_key(&catalogue.meme(*i).id))
            .collect();
        // Fresh memes in preference order, then already-seen ones, longest ago first.
        let mut picked: Vec<u32> = (0..order.len())
            .filter(|&i| !recent.contains(&keys[i]))
            .take(wanted.count)
            .map(|i| order[i])
            .collect();
        if picked.len() < wanted.count {
            let mut seen: Vec<(usize, u32)> = (0..order.len())
                .filter_map(|i| {
                    recent
                        .iter()
                        .position(|k| *k == keys[i])
                        .map(|age| (age, order[i]))
                })
                .collect();
            seen.sort_by_key(|(age, _)| *age);
            picked.extend(
                seen.into_iter()
                    .map(|(_, meme)| meme)
                    .take(wanted.count - picked.len()),
            );
        }
        Ok(picked)
    }

    /// Remembers that `user` was given `memes` (ids).
    pub fn record<'a>(&self, user: &str, memes: impl IntoIterator<Item = &'a str>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let ring = match recent.get_mut(user) {
            Some(ring) => ring,
            None => {
                recent.get_or_insert_mut(user.into(), || VecDeque::with_capacity(RECENT_PER_USER))
            }
        };
        for id in memes {
            if ring.len() == RECENT_PER_USER {
                ring.pop_front();
            }
            ring.push_back(delivery_key(id));
        }
    }

    /// The user's recent deliveries, oldest first.
    fn recent_of(&self, user: &str) -> VecDeque<u64> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.get(user).cloned().unwrap_or_default()
    }
}

/// Memes are remembered by a hash of their id, which survives catalogue reloads.
fn delivery_key(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        let meme = |id: &str, title: &str, tags: &str, extra: &str| {
            format!(
                r#"{{"id":"{id}","title":"{title}","image":"https://example.org/{id}.jpg","source":"https://example.org/{id}","tags":[{tags}]{extra}}}"#
            )
        };
        let memes = [
            meme("cat-a", "Grumpy Cat", r#""cat""#, ""),
            meme("cat-b", "Keyboard Cat", r#""cat""#, ""),
            meme("cat-c", "Nyan Cat", r#""cat""#, r#","regions":["JP"]"#),
            meme("cat-nsfw", "Rude Cat", r#""cat""#, r#","nsfw":true"#),
            meme("dog", "Doge", r#""dog""#, ""),
        ];
        Catalogue::from_json(
            format!(r#"{{"version":1,"memes":[{}]}}"#, memes.join(",")).as_bytes(),
            "test",
        )
        .unwrap()
    }

    fn ids(catalogue: &Catalogue, picked: &[u32]) -> Vec<String> {
        picked
            .iter()
            .map(|i| catalogue.meme(*i).id.clone())
            .collect()
    }

    fn wanted(query: &str) -> Wanted<'_> {
        Wanted {
            query: Some(query),
            count: 1,
            nsfw: false,
            place: &[],
        }
    }

    #[test]
    fn repeated_queries_bring_different_good_matches_then_cycle() {
        let catalogue = catalogue();
        let deliveries = Deliveries::default();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let picked = deliveries.choose(&catalogue, "u", &wanted("cats")).unwrap();
            let id = ids(&catalogue, &picked).remove(0);
            deliveries.record("u", [id.as_str()]);
            seen.push(id);
        }
        let delivered_first = seen[0].clone();
        seen.sort();
        assert_eq!(
            seen,
            ["cat-a", "cat-b", "cat-c"],
            "three different cats, never the nsfw one"
        );
        let fourth = deliveries.choose(&catalogue, "u", &wanted("cats")).unwrap();
        assert_eq!(
            ids(&catalogue, &fourth),
            [delivered_first],
            "once all are used up, the one seen longest ago comes back"
        );
        let other_user = deliveries.choose(&catalogue, "v", &wanted("cats")).unwrap();
        assert_eq!(other_user.len(), 1);
    }

    #[test]
    fn the_users_country_comes_first_among_matches() {
        let catalogue = catalogue();
        let deliveries = Deliveries::default();
        let picked = deliveries
            .choose(
                &catalogue,
                "u",
                &Wanted {
                    place: &["JP"],
                    ..wanted("cat")
                },
            )
            .unwrap();
        assert_eq!(ids(&catalogue, &picked), ["cat-c"]);
        let picked = deliveries
            .choose(
                &catalogue,
                "u",
                &Wanted {
                    place: &["JP"],
                    ..wanted("doge")
                },
            )
            .unwrap();
        assert_eq!(
            ids(&catalogue, &picked),
            ["dog"],
            "a regional meme must still match"
        );
    }

    #[test]
    fn counts_are_distinct_and_all_or_nothing() {
        let catalogue = catalogue();
        let deliveries = Deliveries::default();
        let picked = deliveries
            .choose(
                &catalogue,
                "u",
                &Wanted {
                    count: 3,
                    ..wanted("cat")
                },
            )
            .unwrap();
        let mut got = ids(&catalogue, &picked);
        got.sort();
        assert_eq!(got, ["cat-a", "cat-b", "cat-c"]);
        assert!(matches!(
            deliveries.choose(
                &catalogue,
                "u",
                &Wanted {
                    count: 4,
                    ..wanted("cat")
                }
            ),
            Err(NoMatch::TooFew { available: 3, .. })
        ));
        let with_nsfw = Wanted {
            count: 4,
            nsfw: true,
            ..wanted("cat")
        };
        assert_eq!(
            deliveries
                .choose(&catalogue, "u", &with_nsfw)
                .unwrap()
                .len(),
            4
        );
        assert!(matches!(
            deliveries.choose(&catalogue, "u", &wanted("zebra")),
            Err(NoMatch::Nothing(_))
        ));
    }

    #[test]
    fn no_query_varies_and_skips_nsfw() {
        let catalogue = catalogue();
        let deliveries = Deliveries::default();
        let any = Wanted {
            query: None,
            count: 1,
            nsfw: false,
            place: &[],
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let picked = deliveries.choose(&catalogue, "u", &any).unwrap();
            let id = ids(&catalogue, &picked).remove(0);
            deliveries.record("u", [id.as_str()]);
            seen.insert(id);
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(!seen.contains("cat-nsfw"));
    }

    #[test]
    fn memory_per_user_is_bounded() {
        let deliveries = Deliveries::default();
        let ids: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        deliveries.record("u", ids.iter().map(String::as_str));
        assert_eq!(deliveries.recent_of("u").len(), RECENT_PER_USER);
    }
}
