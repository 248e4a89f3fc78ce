//! Match conflicts between Routes. Oldest first, each Route claims its match keys; a
//! later Route that wants a claimed key is Conflicted as a whole (serving half a Route
//! would surprise) and claims nothing, so a new manifest can never take traffic a
//! running service already has (docs/decisions.md).
//!
//! Every edit runs this over every served Route. Claims are kept as 64-bit hashes of
//! the keys, so the table holds integers instead of borrowed tuples of strings and
//! header lists (at 10k Routes, building, hashing twice and moving those tuples was a
//! tenth of an edit). The hashes are under a seed drawn per memo (or per validation
//! without one), and the memo keeps each Route's hashes, so an edit hashes only the
//! Routes it changed. A claimed hash is confirmed on the keys themselves; if two
//! different keys ever share a hash, the pass is run again on the keys, so hashes only
//! ever decide how fast the answer comes, never what it is.
use std::{borrow::Cow, hash::BuildHasher, sync::Arc};

use foldhash::{HashMap, HashMapExt};

use super::{Issue, Report};
use crate::{HeaderMatch, Route};

/// One thing a request can match: host ("*" for any), method ("*"), exact or prefix,
/// path (lower-cased: Envoy matches paths without regard to case), headers. Borrowed
/// from the Routes where it can be.
type MatchKey<'a> = (&'a str, Cow<'a, str>, bool, Cow<'a, str>, Vec<HeaderMatch>);

/// Every Route's key hashes under a seed drawn now.
#[cfg(test)]
fn fresh_hashes(routes: &[(Report, &Arc<Route>)]) -> Vec<Box<[u64]>> {
    let seed = foldhash::fast::RandomState::default();
    let mut buffers = (Vec::new(), Vec::new());
    routes
        .iter()
        .map(|(_, route)| hash_keys(route, &seed, &mut buffers))
        .collect()
}

/// `route`'s match keys, each hashed, in the order [`apply`] confirms them in;
/// `buffers` are reused across Routes.
pub(super) fn hash_keys<'a>(
    route: &'a Route,
    seed: &impl BuildHasher,
    (methods, keys): &mut (Vec<Cow<'a, str>>, Vec<MatchKey<'a>>),
) -> Box<[u64]> {
    keys.clear();
    push_match_keys(route, methods, keys);
    keys.iter().map(|k| seed.hash_one(k)).collect()
}

/// A Conflicted Route: its position, the older owner's, and the key they share.
struct Lost {
    route: usize,
    owner: usize,
    key: String,
}

/// Marks every Conflicted Route among `by_age` (positions of served Routes, oldest
/// first) with the key it wants and the Route that has it.
/// `hashes`: each Route's key hashes by position, in the order of its match keys, all
/// under one seed (`memo::Derived`, kept with each Route by the memo or made afresh).
pub(super) fn apply(routes: &mut [(Report, &Arc<Route>)], by_age: &[usize], hashes: &[&[u64]]) {
    let lost = by_hash(routes, by_age, hashes).unwrap_or_else(|| by_key(routes, by_age));
    for Lost { route, owner, key } in lost {
        let message = format!(
            "{key} is already served by the older {}; change the match or remove one of them",
            routes[owner].0.key,
        );
        let report = &mut routes[route].0;
        report.conflict = Some(Box::new(Issue {
            object: report.key.clone(),
            field: "spec.match".into(),
            message,
        }));
    }
}

/// The pass on hashes of the keys; `None` if two different keys shared a hash.
fn by_hash(
    routes: &[(Report, &Arc<Route>)],
    by_age: &[usize],
    hashes: &[&[u64]],
) -> Option<Vec<Lost>> {
    let mut owners: HashMap<u64, usize> = HashMap::with_capacity(by_age.len());
    let mut lost = Vec::new();
    for &i in by_age {
        // The first key another Route claimed, as the pass on keys finds it: an equal
        // key has an equal hash, so no earlier key of this Route is claimed.
        let claimed = hashes[i]
            .iter()
            .enumerate()
            .find_map(|(at, h)| owners.get(h).map(|&o| (at, o)));
        if let Some((at, owner)) = claimed {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            push_match_keys(routes[i].1, &mut Vec::new(), &mut ours);
            push_match_keys(routes[owner].1, &mut Vec::new(), &mut theirs);
            let key = ours.get(at).filter(|k| theirs.contains(k))?;
            lost.push(Lost {
                route: i,
                owner,
                key: describe(key),
            });
            continue;
        }
        for &h in hashes[i] {
            owners.entry(h).or_insert(i);
        }
    }
    Some(lost)
}

/// The same pass on the keys themselves.
fn by_key(routes: &[(Report, &Arc<Route>)], by_age: &[usize]) -> Vec<Lost> {
    let mut owners: HashMap<MatchKey<'_>, usize> = HashMap::with_capacity(by_age.len());
    let (mut keys, mut methods) = (Vec::new(), Vec::new());
    let mut lost = Vec::new();
    for &i in by_age {
        keys.clear();
        push_match_keys(routes[i].1, &mut methods, &mut keys);
        if let Some((k, &owner)) = keys.iter().find_map(|k| owners.get(k).map(|o| (k, o))) {
            lost.push(Lost {
                route: i,
                owner,
                key: describe(k),
            });
            continue;
        }
        for k in keys.drain(..) {
            owners.entry(k).or_insert(i);
        }
    }
    lost
}

fn describe((host, method, exact, path, _): &MatchKey<'_>) -> String {
    let kind = if *exact { "exact" } else { "prefix" };
    format!("host {host} method {method} {kind} {path}")
}

pub(super) fn normalized_headers(route: &Route) -> Vec<HeaderMatch> {
    if route.spec.match_.headers.is_empty() {
        return Vec::new();
    }
    let mut headers: Vec<HeaderMatch> = route
        .spec
        .match_
        .headers
        .iter()
        .map(|h| HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            ..h.clone()
        })
        .collect();
    headers.sort();
    headers
}

/// `route`'s match keys, added to `keys`; `methods` is a buffer reused across Routes.
fn push_match_keys<'a>(
    route: &'a Route,
    methods: &mut Vec<Cow<'a, str>>,
    keys: &mut Vec<MatchKey<'a>>,
) {
    let spec = &route.spec;
    methods.clear();
    methods.extend(spec.match_.methods.iter().map(|m| upper(m)));
    methods.sort();
    methods.dedup();
    let any_method = [Cow::Borrowed("*")];
    let methods = if methods.is_empty() {
        &any_method[..]
    } else {
        &methods[..]
    };
    let headers = normalized_headers(route);
    let mut on_host = |h: &'a str| {
        for m in methods {
            for p in &spec.match_.paths {
                let (exact, path) = match (&p.exact, &p.prefix) {
                    (Some(v), _) => (true, v),
                    (None, Some(v)) => (false, v),
                    (None, None) => continue,
                };
                keys.push((h, m.clone(), exact, lower(path), headers.clone()));
            }
        }
    };
    if spec.hosts.is_empty() {
        on_host("*");
    }
    for h in &spec.hosts {
        on_host(h);
    }
}

fn upper(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::*;
    use crate::{HeaderMatch, ObjectKey, PathMatch, validate::tests::mk_route};

    /// Every key hashes alike: every claimed hash is a collision to confirm.
    struct Colliding;
    struct Zero;
    impl Hasher for Zero {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }
    impl BuildHasher for Colliding {
        type Hasher = Zero;
        fn build_hasher(&self) -> Zero {
            Zero
        }
    }

    fn routes(seed: u64, n: usize) -> Vec<Arc<Route>> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|i| {
                let v = next();
                let path = match v % 5 {
                    0 => PathMatch::prefix("/shared"),
                    1 => PathMatch::prefix("/SHARED"),
                    2 => PathMatch::exact("/shared"),
                    3 => PathMatch::prefix(&format!("/p{}", v % 7)),
                    _ => PathMatch::exact(&format!("/e{}", v % 3)),
                };
                let mut paths = vec![path];
                if (v >> 9).is_multiple_of(3) {
                    paths.push(PathMatch::prefix(&format!("/q{}", v % 2)));
                }
                let mut r = mk_route(&format!("r{i}"), ((v >> 20) % 5) as i64, paths);
                r.spec.hosts = match (v >> 3) % 4 {
                    0 => vec![],
                    1 => vec!["a.example.com".into()],
                    2 => vec!["A.example.com".into(), "b.example.com".into()],
                    _ => vec!["*.example.com".into()],
                };
                r.spec.match_.methods = match (v >> 5) % 3 {
                    0 => vec![],
                    1 => vec!["GET".into()],
                    _ => vec!["get".into(), "POST".into(), "GET".into()],
                };
                if (v >> 7).is_multiple_of(3) {
                    r.spec.match_.headers = vec![HeaderMatch {
                        name: if (v >> 11) % 2 == 0 {
                            "X-Team"
                        } else {
                            "x-team"
                        }
                        .into(),
                        exact: Some("a".into()),
                        ..Default::default()
                    }];
                }
                Arc::new(r)
            })
            .collect()
    }

    fn colliding(routes: &[(Report, &Arc<Route>)]) -> Vec<Box<[u64]>> {
        let mut buffers = (Vec::new(), Vec::new());
        routes
            .iter()
            .map(|(_, r)| hash_keys(r, &Colliding, &mut buffers))
            .collect()
    }

    fn texts(lost: &[Lost]) -> Vec<(usize, usize, String)> {
        lost.iter()
            .map(|l| (l.route, l.owner, l.key.clone()))
            .collect()
    }

    #[test]
    fn hashes_give_what_the_keys_give_and_a_collision_falls_back_to_the_keys() {
        let mut conflicted = 0;
        for seed in 1..40u64 {
            let routes = routes(seed * 0x9e37_79b9, 60);
            let pairs: Vec<(Report, &Arc<Route>)> = routes
                .iter()
                .map(|r| (Report::new(ObjectKey::new("Route", &r.metadata), None), r))
                .collect();
            // Any order is an age order to this pass.
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            order.rotate_left((seed % 60) as usize);
            let want = texts(&by_key(&pairs, &order));
            let seeded = fresh_hashes(&pairs);
            let seeded: Vec<&[u64]> = seeded.iter().map(|h| &h[..]).collect();
            let got = by_hash(&pairs, &order, &seeded);
            assert_eq!(texts(&got.expect("no collision in 64 bits")), want);
            // Every key on one hash: refused at the first claim that is not the key.
            let colliding = colliding(&pairs);
            let colliding: Vec<&[u64]> = colliding.iter().map(|h| &h[..]).collect();
            let colliding = by_hash(&pairs, &order, &colliding);
            if let Some(lost) = colliding {
                assert_eq!(texts(&lost), want, "seed {seed}");
            }
            conflicted += want.len();
        }
        assert!(conflicted > 100, "the inputs conflict often: {conflicted}");
    }

    #[test]
    fn a_collision_is_never_a_conflict() {
        let a = Arc::new(mk_route("a", 0, vec![PathMatch::prefix("/a")]));
        let b = Arc::new(mk_route("b", 1, vec![PathMatch::prefix("/b")]));
        let pairs: Vec<(Report, &Arc<Route>)> = [&a, &b]
            .into_iter()
            .map(|r| (Report::new(ObjectKey::new("Route", &r.metadata), None), r))
            .collect();
        let hashes = colliding(&pairs);
        let hashes: Vec<&[u64]> = hashes.iter().map(|h| &h[..]).collect();
        assert!(by_hash(&pairs, &[0, 1], &hashes).is_none());
        let mut pairs = pairs;
        apply(&mut pairs, &[0, 1], &hashes);
        assert!(pairs.iter().all(|(r, _)| r.conflict.is_none()));
    }

    #[test]
    fn kept_hashes_are_taken_only_for_the_very_same_route() {
        use crate::validate::memo::{Kept, check_all_with};
        let a = Arc::new(mk_route("a", 0, vec![PathMatch::prefix("/a")]));
        let b = Arc::new(mk_route("b", 1, vec![PathMatch::prefix("/b")]));
        // The same key as b, a new object that wants a's path.
        let b2 = Arc::new(mk_route("b", 1, vec![PathMatch::prefix("/a")]));
        let seed = foldhash::fast::RandomState::default();
        let made = std::cell::Cell::new(0);
        let check = |r: &Route| Report::new(ObjectKey::new("Route", &r.metadata), None);
        let derive = |r: &Route| {
            made.set(made.get() + 1);
            hash_keys(r, &seed, &mut Default::default())
        };
        let mut kept: Kept<Route, Box<[u64]>> = Kept::default();
        let hashes = |kept: &Kept<Route, Box<[u64]>>| -> Vec<Vec<u64>> {
            kept.iter().map(|(_, _, h)| h.to_vec()).collect()
        };
        check_all_with(&[a.clone(), b], Some(&mut kept), check, derive);
        let first_hashes = hashes(&kept);
        made.set(0);
        // b is replaced by b2 under the same key: its hashes are made anew, not taken
        // from b; a's are carried over.
        let second = [a, b2];
        let mut reports = check_all_with(&second, Some(&mut kept), check, derive);
        let got = hashes(&kept);
        assert_eq!(made.get(), 1);
        assert_eq!(got[0], first_hashes[0]);
        assert_ne!(got[1], first_hashes[1]);
        // b2 wants a's path: the kept hashes find the conflict.
        let hashes: Vec<&[u64]> = got.iter().map(|h| &h[..]).collect();
        apply(&mut reports, &[0, 1], &hashes);
        assert!(reports[1].0.conflict.is_some());
    }
}
