//! Which memes a user gets for a request: the best matches for the query, memes of the
//! user's own country first, and variety, so that asking the same thing again brings a
//! different good match until the good matches are used up.
//!
//! Variety needs memory of what each user was recently given. It is bounded: the last
//! [`RECENT_PER_USER`] deliveries for each of the [`RECENT_USERS`] most recently active users;
//! older memory is forgotten, never grows. It is a courtesy, not a record: the ledger keeps
//! what was charged.

use super::Catalogue;
use super::hybrid::Match;
use quick_cache::sync::{EntryAction, EntryResult};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

/// Deliveries remembered per user.
pub const RECENT_PER_USER: usize = 24;
/// Users whose recent deliveries are remembered.
pub const RECENT_USERS: usize = 65_536;

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
    /// A bounded, concurrent cache: the least useful entries are evicted beyond its size.
    recent: quick_cache::sync::Cache<String, Recent>,
    /// Spreads requests without a query over the catalogue.
    rotation: AtomicU64,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            recent: quick_cache::sync::Cache::new(RECENT_USERS),
            rotation: AtomicU64::new(0),
        }
    }
}

/// A user's recent deliveries (delivery keys), oldest first.
#[derive(Debug, Clone, Copy)]
struct Recent {
    keys: [u64; RECENT_PER_USER],
    len: usize,
}

impl Recent {
    const EMPTY: Recent = Recent {
        keys: [0; RECENT_PER_USER],
        len: 0,
    };

    fn age(&self, key: u64) -> Option<usize> {
        self.keys[..self.len].iter().position(|k| *k == key)
    }

    fn push(&mut self, key: u64) {
        if self.len == RECENT_PER_USER {
            self.keys.copy_within(1.., 0);
            self.len -= 1;
        }
        self.keys[self.len] = key;
        self.len += 1;
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
        let regional = (!wanted.place.is_empty()).then_some(|doc: &u32| {
            catalogue
                .meme(*doc)
                .regions
                .iter()
                .any(|r| wanted.place.contains(&r.as_str()))
        });
        let recent = self.recent_of(user);
        let too_few = |available: usize| NoMatch::TooFew {
            query: wanted.query.unwrap_or("").to_string(),
            available,
            wanted: wanted.count,
        };
        match wanted.query {
            Some(query) => {
                let ranked = catalogue.ranked(query, wanted.nsfw);
                if ranked.hits.is_empty() {
                    return Err(NoMatch::Nothing(query.to_string()));
                }
                if ranked.hits.len() < wanted.count {
                    return Err(too_few(ranked.hits.len()));
                }
                let (good, rest) = ranked.hits.split_at(ranked.good);
                // Good matches before the rest; within each, memes of the user's place first.
                let order = preferred(docs(good), regional).chain(preferred(docs(rest), regional));
                Ok(pick(catalogue, order, wanted.count, &recent))
            }
            None => {
                let pool: Cow<[u32]> = match wanted.nsfw {
                    true => Cow::Owned((0..catalogue.len() as u32).collect()),
                    false => Cow::Borrowed(catalogue.safe()),
                };
                if pool.len() < wanted.count {
                    return Err(too_few(pool.len()));
                }
                let turn = self.rotation.fetch_add(1, Ordering::Relaxed);
                let start = (turn.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % pool.len();
                let rotated = pool[start..].iter().chain(&pool[..start]).copied();
                Ok(pick(
                    catalogue,
                    preferred(rotated, regional),
                    wanted.count,
                    &recent,
                ))
            }
        }
    }

    /// Remembers that `user` was given the memes with these delivery keys.
    pub fn record(&self, user: &str, keys: impl Iterator<Item = u64> + Clone) {
        let remember = |ring: &mut Recent| keys.clone().for_each(|key| ring.push(key));
        let existing = self.recent.entry(user, None, |_, ring| {
            remember(ring);
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(slot) = existing {
            let mut ring = Recent::EMPTY;
            remember(&mut ring);
            let _ = slot.insert(ring);
        }
    }

    fn recent_of(&self, user: &str) -> Recent {
        self.recent.get(user).unwrap_or(Recent::EMPTY)
    }
}

fn docs(hits: &[Match]) -> impl Iterator<Item = u32> + Clone + '_ {
    hits.iter().map(|hit| hit.doc)
}

/// `docs` with those of the user's place first, ranking otherwise kept.
fn preferred(
    docs: impl Iterator<Item = u32> + Clone,
    regional: Option<impl Fn(&u32) -> bool + Copy>,
) -> impl Iterator<Item = u32> + Clone {
    let local = docs.clone().filter(move |d| regional.is_some_and(|r| r(d)));
    let others = docs.filter(move |d| !regional.is_some_and(|r| r(d)));
    // Without a place, skip the pass that could only find nothing.
    let local = regional.map(|_| local).into_iter().flatten();
    local.chain(others)
}

/// The first `count` memes of `order` the user has not seen recently; if there are not
/// enough, the ones seen longest ago. One pass, and no allocation beyond the result while
/// unseen memes suffice (this runs for every `get`).
fn pick(
    catalogue: &Catalogue,
    order: impl Iterator<Item = u32>,
    count: usize,
    recent: &Recent,
) -> Vec<u32> {
    let mut picked = Vec::with_capacity(count);
    // The `count` seen memes with the oldest deliveries so far, oldest first; equal ages
    // keep the order of `order`.
    let mut oldest: Vec<(usize, u32)> = Vec::new();
    for doc in order {
        match recent.age(catalogue.delivery_key(doc)) {
            None => {
                picked.push(doc);
                if picked.len() == count {
                    return picked;
                }
            }
            Some(age) => {
                let at = oldest.partition_point(|(older, _)| *older <= age);
                if at < count {
                    oldest.insert(at, (age, doc));
                    oldest.truncate(count);
                }
            }
        }
    }
    let missing = count - picked.len();
    picked.extend(oldest.into_iter().map(|(_, doc)| doc).take(missing));
    picked
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

    proptest::proptest! {
        /// `pick` in one pass chooses what its definition says: the first `count` unseen in
        /// order, then the seen ones longest ago first (ties in order).
        #[test]
        fn pick_matches_its_definition(
            order in proptest::collection::vec(0u32..5, 0..12),
            delivered in proptest::collection::vec(0u32..5, 0..30),
            count in 1usize..6,
        ) {
            let catalogue = catalogue();
            let mut recent = Recent::EMPTY;
            for doc in &delivered {
                recent.push(catalogue.delivery_key(*doc));
            }
            let age = |doc: &u32| recent.age(catalogue.delivery_key(*doc));
            let mut expected: Vec<u32> =
                order.iter().copied().filter(|d| age(d).is_none()).take(count).collect();
            let mut seen: Vec<u32> = order.iter().copied().filter(|d| age(d).is_some()).collect();
            seen.sort_by_key(|d| age(d));
            let missing = count - expected.len();
            expected.extend(seen.into_iter().take(missing));
            proptest::prop_assert_eq!(
                pick(&catalogue, order.iter().copied(), count, &recent),
                expected
            );
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
            deliveries.record(
                "u",
                std::iter::once(catalogue.delivery_key(catalogue.find(&id).unwrap())),
            );
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
            deliveries.record(
                "u",
                std::iter::once(catalogue.delivery_key(catalogue.find(&id).unwrap())),
            );
            seen.insert(id);
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(!seen.contains("cat-nsfw"));
    }

    #[test]
    fn memory_per_user_is_bounded() {
        let deliveries = Deliveries::default();
        deliveries.record("u", 0..100);
        assert_eq!(deliveries.recent_of("u").len, RECENT_PER_USER);
    }
}
