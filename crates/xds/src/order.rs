//! Push order across resource types.
//!
//! Envoy applies each response as it arrives, so a route must never arrive
//! before the cluster it points to, and a cluster must not disappear while
//! a route may still point to it: clusters and endpoints go first, then
//! listeners and routes, then everything else; removals of clusters and
//! endpoints are deferred until after all of those.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION, SECRET};

fn rank(type_url: &str) -> u8 {
    match type_url {
        CLUSTER => 0,
        CLUSTER_LOAD_ASSIGNMENT => 1,
        LISTENER => 2,
        ROUTE_CONFIGURATION => 3,
        _ => 4,
    }
}

/// Push order: the well-known types first, the rest alphabetically.
fn push_cmp(a: &str, b: &str) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
}

/// A type URL as a stream keeps it: the well-known ones without an allocation.
fn key(type_url: &str) -> Cow<'static, str> {
    [
        CLUSTER,
        CLUSTER_LOAD_ASSIGNMENT,
        LISTENER,
        ROUTE_CONFIGURATION,
        SECRET,
    ]
    .into_iter()
    .find(|k| *k == type_url)
    .map_or_else(|| Cow::Owned(type_url.to_owned()), Cow::Borrowed)
}

/// One stream's state per type, kept in push order. A stream holds a handful of types
/// (at most [`crate::limits::MAX_TYPES`]), so a vector is both smaller than a map (a
/// B-tree node has room for eleven entries, a connected Envoy uses four) and already in
/// the order pushes go out.
#[derive(Debug)]
pub(crate) struct ByType<T>(Vec<(Cow<'static, str>, T)>);

impl<T> Default for ByType<T> {
    fn default() -> Self {
        ByType(Vec::new())
    }
}

impl<T> ByType<T> {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn position(&self, type_url: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(t, _)| push_cmp(t, type_url))
    }

    pub(crate) fn get(&self, type_url: &str) -> Option<&T> {
        self.position(type_url).ok().map(|i| &self.0[i].1)
    }

    pub(crate) fn get_mut(&mut self, type_url: &str) -> Option<&mut T> {
        self.position(type_url).ok().map(|i| &mut self.0[i].1)
    }

    /// Adds `type_url`'s state, or replaces it.
    pub(crate) fn insert(&mut self, type_url: &str, value: T) {
        match self.position(type_url) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key(type_url), value)),
        }
    }

    /// `type_url`'s state, added as `T::default()` if the stream has none yet.
    pub(crate) fn get_or_default(&mut self, type_url: &str) -> &mut T
    where
        T: Default,
    {
        let i = match self.position(type_url) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key(type_url), T::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    /// Every type in push order, with its state.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(t, v)| (&**t, v))
    }

    /// The `i`th type in push order, and its state.
    pub(crate) fn at_mut(&mut self, i: usize) -> (&str, &mut T) {
        let (t, v) = &mut self.0[i];
        (t, v)
    }
}

/// Whether removals of this type must wait until the other types were sent.
pub(crate) fn defers_removals(type_url: &str) -> bool {
    type_url == CLUSTER || type_url == CLUSTER_LOAD_ASSIGNMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order() {
        let types = [
            "type.googleapis.com/z.Custom",
            ROUTE_CONFIGURATION,
            "type.googleapis.com/a.Custom",
            LISTENER,
            CLUSTER_LOAD_ASSIGNMENT,
            CLUSTER,
        ];
        let mut by_type = ByType::default();
        for (i, t) in types.iter().enumerate() {
            by_type.insert(t, i);
        }
        // Replacing keeps one entry per type.
        by_type.insert(LISTENER, 10);
        assert_eq!(by_type.len(), types.len());
        assert_eq!(by_type.get(LISTENER), Some(&10));
        assert_eq!(by_type.get("type.googleapis.com/m.Custom"), None);
        let order: Vec<&str> = by_type.iter().map(|(t, _)| t).collect();
        assert_eq!(
            order,
            [
                CLUSTER,
                CLUSTER_LOAD_ASSIGNMENT,
                LISTENER,
                ROUTE_CONFIGURATION,
                "type.googleapis.com/a.Custom",
                "type.googleapis.com/z.Custom"
            ]
        );
    }
}
