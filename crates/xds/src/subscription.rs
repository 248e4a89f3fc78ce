//! Which resources of one type a stream asked for.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;

use crate::hash::Fnv64;
use crate::nodes::Event;
use crate::snapshot::{Entry, Snapshot};

const WILDCARD: &str = "*";

/// Names subscribed for one type on one stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Subscription {
    /// All resources of the type (plus `names`, which then change nothing).
    pub(crate) wildcard: bool,
    /// Interned: streams that ask for the same names (every Envoy of a fleet asks for
    /// the same clusters) share one set, so a stream costs a pointer, not the names.
    pub(crate) names: Arc<BTreeSet<String>>,
    /// A hash of the list this subscription was made from, as sent (in its order), or 0.
    /// An Envoy re-sends its whole EDS list (2,000 names) with every ACK: a SotW request
    /// repeating the list keeps the subscription without sorting the names and looking
    /// the set up again (that was ~half of the interning's share of a connection
    /// storm). A list made to collide with the last one only keeps the sender's own
    /// subscription as it was.
    asked: u64,
}

/// What a subscription selects; not how the list that made it was spelled.
impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard
            && (Arc::ptr_eq(&self.names, &other.names) || self.names == other.names)
    }
}

impl Eq for Subscription {}

/// The list as sent: every name, in order.
fn asked(names: &[String]) -> u64 {
    let mut h = Fnv64::new();
    for n in names {
        h.write_field(n.as_bytes());
    }
    h.value() | 1
}

impl Subscription {
    /// Subscription from the first request for a type: no names (legacy
    /// wildcard, what Envoy sends for LDS/CDS) or "*" means everything.
    pub(crate) fn first(names: &[String]) -> Subscription {
        Subscription {
            wildcard: names.is_empty() || names.iter().any(|n| n == WILDCARD),
            names: explicit(names),
            asked: asked(names),
        }
    }

    /// SotW: a later request replaces the name list. An empty list keeps a
    /// wildcard subscription wildcard (Envoy keeps sending empty lists for
    /// LDS/CDS); otherwise it means "nothing".
    pub(crate) fn replace(&self, names: &[String]) -> Subscription {
        let asked = asked(names);
        if asked == self.asked {
            return self.clone();
        }
        let wildcard = names.iter().any(|n| n == WILDCARD) || (names.is_empty() && self.wildcard);
        Subscription {
            wildcard,
            names: explicit(names),
            asked,
        }
    }

    /// Delta: apply subscribe/unsubscribe lists; returns whether anything
    /// changed.
    pub(crate) fn update(&mut self, subscribe: &[String], unsubscribe: &[String]) -> bool {
        let before = self.clone();
        self.asked = 0;
        let names = Arc::make_mut(&mut self.names);
        for n in subscribe {
            if n == WILDCARD {
                self.wildcard = true;
            } else {
                names.insert(n.clone());
            }
        }
        for n in unsubscribe {
            if n == WILDCARD {
                self.wildcard = false;
            } else {
                names.remove(n);
            }
        }
        *self != before
    }

    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Existing resources selected by this subscription, sorted by name.
    pub(crate) fn select<'a>(&self, snapshot: &'a Snapshot, type_url: &str) -> Vec<&'a Entry> {
        if self.wildcard {
            snapshot.entries(type_url).collect()
        } else {
            self.names
                .iter()
                .filter_map(|n| snapshot.entry(type_url, n))
                .collect()
        }
    }
}

/// The named part of `names`, as the set every stream asking for the same names shares.
/// A set already live is found by the request's own names, without copying them: an
/// Envoy repeats its whole EDS name list with every ACK.
fn explicit(names: &[String]) -> Arc<BTreeSet<String>> {
    let mut sorted: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != WILDCARD)
        .collect();
    if sorted.is_empty() {
        return Arc::default();
    }
    sorted.sort_unstable();
    sorted.dedup();
    let mut h = Fnv64::new();
    for n in &sorted {
        h.write_field(n.as_bytes());
    }
    let key = h.value();
    let mut table = INTERNED.lock();
    if let Some(live) = table.get(&key).and_then(Weak::upgrade)
        && live.iter().map(String::as_str).eq(sorted.iter().copied())
    {
        return live;
    }
    // Drop dead entries now and then, so the table tracks the live sets.
    if table.len() >= 64 && table.len().is_power_of_two() {
        table.retain(|_, w| w.strong_count() > 0);
    }
    let set: Arc<BTreeSet<String>> = Arc::new(sorted.into_iter().map(str::to_owned).collect());
    table.insert(key, Arc::downgrade(&set));
    set
}

/// Live name sets by content hash. Entries are weak: a set is freed with its last stream.
static INTERNED: LazyLock<Mutex<HashMap<u64, Weak<BTreeSet<String>>>>> =
    LazyLock::new(Mutex::default);

/// Result of feeding one input (request or snapshot) to a stream's logic.
#[derive(Debug)]
pub(crate) struct Output<R> {
    /// To send, in this order.
    pub(crate) responses: Vec<R>,
    pub(crate) events: Vec<Event>,
}

impl<R> Default for Output<R> {
    fn default() -> Self {
        Output {
            responses: Vec::new(),
            events: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcard_rules() {
        assert!(Subscription::first(&[]).wildcard);
        assert!(Subscription::first(&v(&["*", "a"])).wildcard);
        let named = Subscription::first(&v(&["a"]));
        assert!(!named.wildcard && named.covers("a") && !named.covers("b"));
        // Empty list keeps legacy wildcard, but empties a named subscription.
        assert!(Subscription::first(&[]).replace(&[]).wildcard);
        let none = named.replace(&[]);
        assert!(!none.wildcard && none.names.is_empty());
    }

    #[test]
    fn a_repeated_or_reordered_list_is_no_change_and_another_list_is() {
        let a = Subscription::first(&v(&["x", "y", "z"]));
        let same = a.replace(&v(&["x", "y", "z"]));
        assert!(same == a && Arc::ptr_eq(&same.names, &a.names));
        // Spelled differently, selecting the same: equal, so nothing is re-sent.
        let reordered = a.replace(&v(&["z", "x", "y", "x"]));
        assert!(reordered == a);
        // And the list after it is compared with the reordered one, not the first.
        let fewer = reordered
            .replace(&v(&["x", "y", "z"]))
            .replace(&v(&["x", "y"]));
        assert!(fewer != a);
        assert_eq!(
            *fewer.names,
            BTreeSet::from(["x".to_string(), "y".to_string()])
        );
        // A wildcard made from an empty list stays one when the list repeats.
        let w = Subscription::first(&[]);
        assert!(w.replace(&[]).wildcard && w.replace(&v(&["x"])) != w);
    }

    #[test]
    fn delta_update() {
        let mut s = Subscription::first(&v(&["a"]));
        assert!(s.update(&v(&["b"]), &v(&["a"])));
        assert_eq!(*s.names, BTreeSet::from(["b".to_string()]));
        assert!(!s.update(&v(&["b"]), &[]));
        assert!(s.update(&v(&["*"]), &[]));
        assert!(s.wildcard);
        assert!(s.update(&[], &v(&["*"])));
        assert!(!s.wildcard);
    }

    #[test]
    fn equal_name_lists_share_one_set() {
        let a = Subscription::first(&v(&["x", "y"]));
        let b = Subscription::first(&v(&["y", "x", "*", "y"]));
        assert!(Arc::ptr_eq(&a.names, &b.names));
        assert_eq!(*b.names, BTreeSet::from(["x".to_string(), "y".to_string()]));
        // A later request repeating the names finds the same set.
        assert!(Arc::ptr_eq(&a.names, &b.replace(&v(&["x", "y"])).names));
        let c = Subscription::first(&v(&["x"]));
        assert!(!Arc::ptr_eq(&a.names, &c.names));
        // A delta update gives the stream its own set; the shared one is untouched.
        let mut d = a.clone();
        assert!(d.update(&v(&["z"]), &[]));
        assert_eq!(a.names.len(), 2);
        assert_eq!(d.names.len(), 3);
    }
}
