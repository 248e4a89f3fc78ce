use portcullis_xds::{NackStatus, Protocol, TypeStatus, type_url};

use super::*;

fn node(id: &str, rds: &str, nack: Option<&str>) -> NodeStatus {
    let status = TypeStatus {
        sent: Some("sent-only-here".into()),
        acked: Some(rds.into()),
        nack: nack.map(|m| NackStatus {
            version: "v9".into(),
            message: m.into(),
            at: format!("2026-11-22T00:00:0{}Z", id.len() % 10),
        }),
        ..Default::default()
    };
    NodeStatus {
        stream_id: id.len() as u64,
        id: id.into(),
        cluster: "portcullis".into(),
        protocol: Protocol::Delta,
        peer: Some(format!("10.0.0.{}:4000", id.len())),
        connected_at: "2026-11-22T00:00:00Z".into(),
        last_seen: "2026-11-22T00:00:00Z".into(),
        types: [(type_url::ROUTE_CONFIGURATION.to_string(), status)].into(),
    }
}

#[test]
fn envoys_in_the_same_state_form_one_group() {
    let groups = summarize(&[
        node("edge-1", "v1", None),
        node("edge-22", "v1", None),
        node("edge-333", "v1", None),
        node("edge-4444", "v1", None),
        node("edge-5", "v2", Some("bad regex")),
    ]);
    assert_eq!(groups.len(), 2, "{groups:#?}");
    let v1 = groups.iter().find(|g| g.count == 4).unwrap();
    assert_eq!(v1.nodes, ["edge-1", "edge-22", "edge-333"]);
    let rejected = groups.iter().find(|g| g.count == 1).unwrap();
    let state = &rejected.types[type_url::ROUTE_CONFIGURATION];
    assert_eq!(state.acked.as_deref(), Some("v2"));
    assert_eq!(
        state.nack,
        Some(Nack {
            version: "v9".into(),
            message: "bad regex".into()
        })
    );
}

#[test]
fn rate_limit_streams_are_left_out_and_silent_streams_kept() {
    let mut ratelimit = node("rl", "v1", None);
    ratelimit.types = [(
        "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig".to_string(),
        TypeStatus::default(),
    )]
    .into();
    let mut fresh = node("new-envoy", "v1", None);
    fresh.types.clear();
    let groups = summarize(&[ratelimit, fresh]);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].nodes, ["new-envoy"]);
    assert!(groups[0].types.is_empty());
}

#[test]
fn long_messages_are_cut_at_a_character_boundary() {
    let long = "é".repeat(MAX_MESSAGE);
    let groups = summarize(&[node("a", "v1", Some(&long))]);
    let message = &groups[0].types[type_url::ROUTE_CONFIGURATION]
        .nack
        .as_ref()
        .unwrap()
        .message;
    assert!(message.len() <= MAX_MESSAGE + '…'.len_utf8());
    assert!(message.ends_with('…'));
}

#[test]
fn too_many_distinct_states_fold_into_one_pending_group() {
    let nodes: Vec<NodeStatus> = (0..MAX_GROUPS + 10)
        .map(|i| node(&format!("e{i}"), &format!("v{i}"), None))
        .collect();
    let groups = summarize(&nodes);
    assert_eq!(groups.len(), MAX_GROUPS);
    assert_eq!(groups.iter().map(|g| g.count).sum::<usize>(), nodes.len());
    let folded = groups.last().unwrap();
    assert_eq!(folded.count, 11);
    assert!(folded.types.is_empty());
}
