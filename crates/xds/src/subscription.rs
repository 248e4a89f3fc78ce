//! Which resources of one type a stream asked for.

use std::collections::BTreeSet;

use crate::nodes::Event;
use crate::snapshot::{Entry, Snapshot};

const WILDCARD: &str = "*";

/// Names subscribed for one type on one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// All resources of the type (plus `names`, which then change nothing).
    pub(crate) wildcard: bool,
    pub(crate) names: BTreeSet<String>,
}

impl Subscription {
    /// Subscription from the first request for a type: no names (legacy
    /// wildcard, what Envoy sends for LDS/CDS) or "*" means everything.
    pub(crate) fn first(names: &[String]) -> Subscription {
        Subscription {
            wildcard: names.is_empty() || names.iter().any(|n| n == WILDCARD),
            names: explicit(names),
        }
    }

    /// SotW: a later request replaces the name list. An empty list keeps a
    /// wildcard subscription wildcard (Envoy keeps sending empty lists for
    /// LDS/CDS); otherwise it means "nothing".
    pub(crate) fn replace(&self, names: &[String]) -> Subscription {
        let wildcard = names.iter().any(|n| n == WILDCARD) || (names.is_empty() && self.wildcard);
        Subscription {
            wildcard,
            names: explicit(names),
        }
    }

    /// Delta: apply subscribe/unsubscribe lists; returns whether anything
    /// changed.
    pub(crate) fn update(&mut self, subscribe: &[String], unsubscribe: &[String]) -> bool {
        let before = self.clone();
        for n in subscribe {
            if n == WILDCARD {
                self.wildcard = true;
            } else {
                self.names.insert(n.clone());
            }
        }
        for n in unsubscribe {
            if n == WILDCARD {
                self.wildcard = false;
            } else {
                self.names.remove(n);
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

fn explicit(names: &[String]) -> BTreeSet<String> {
    names.iter().filter(|n| *n != WILDCARD).cloned().collect()
}

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
    fn delta_update() {
        let mut s = Subscription::first(&v(&["a"]));
        assert!(s.update(&v(&["b"]), &v(&["a"])));
        assert_eq!(s.names, BTreeSet::from(["b".to_string()]));
        assert!(!s.update(&v(&["b"]), &[]));
        assert!(s.update(&v(&["*"]), &[]));
        assert!(s.wildcard);
        assert!(s.update(&[], &v(&["*"])));
        assert!(!s.wildcard);
    }
}
