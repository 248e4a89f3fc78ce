//! Push order across resource types.
//!
//! Envoy applies each response as it arrives, so a route must never arrive
//! before the cluster it points to, and a cluster must not disappear while
//! a route may still point to it: clusters and endpoints go first, then
//! listeners and routes, then everything else; removals of clusters and
//! endpoints are deferred until after all of those.

use crate::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

fn rank(type_url: &str) -> u8 {
    match type_url {
        CLUSTER => 0,
        CLUSTER_LOAD_ASSIGNMENT => 1,
        LISTENER => 2,
        ROUTE_CONFIGURATION => 3,
        _ => 4,
    }
}

/// Type URLs in push order (well-known first, the rest alphabetically).
pub(crate) fn push_order<'a>(types: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = types.cloned().collect();
    v.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    v
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
            "type.googleapis.com/z.Custom".to_string(),
            ROUTE_CONFIGURATION.into(),
            "type.googleapis.com/a.Custom".into(),
            LISTENER.into(),
            CLUSTER_LOAD_ASSIGNMENT.into(),
            CLUSTER.into(),
        ];
        assert_eq!(
            push_order(types.iter()),
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
