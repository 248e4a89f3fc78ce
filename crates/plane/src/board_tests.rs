use portcullis_api::{status::types::PROGRAMMED, validate::Issue};

use super::*;

fn report(name: &str, error: Option<&str>) -> Report {
    let key = ObjectKey::route("team", name);
    Report {
        errors: error
            .map(|m| Issue {
                object: key.clone(),
                field: "spec".into(),
                message: m.into(),
            })
            .into_iter()
            .collect(),
        key,
        generation: Some(1),
        warnings: vec![],
        unresolved: vec![],
        conflict: None,
        shadowed: vec![],
        not_allowed: vec![],
        expiring: None,
    }
}

fn programmed(status: bool) -> Condition {
    Condition::new(PROGRAMMED, status, "Programmed", "ACKed by 1 Envoy(s)")
}

/// A board made from `reports` at `t0`, with Programmed set on every object.
fn board_of(reports: &[Report]) -> Board {
    let mut board = Board::default();
    board.objects = board.next_objects(&[], reports, |_| true, &[], Some(PROGRAMMED), "t0");
    let all = reports
        .iter()
        .map(|r| (r.key.to_string(), programmed(true)));
    board.set_conditions(all, "t0");
    board
}

fn view<'a>(objects: &'a [ObjectView], name: &str) -> &'a ObjectView {
    let name = format!("Route team/{name}");
    objects.iter().find(|o| o.object == name).unwrap()
}

fn condition<'a>(v: &'a ObjectView, type_: &str) -> &'a Condition {
    v.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

#[test]
fn an_unchanged_object_keeps_its_view_and_a_changed_one_gets_a_new_one() {
    let before = [report("a", None), report("b", None), report("c", None)];
    let mut board = board_of(&before);
    let accepted = |o: &[ObjectView], n| condition(view(o, n), "Accepted").clone();
    let was_b = accepted(&board.objects, "b");
    // b breaks, c is deleted, d is new; a is as it was.
    let after = [
        report("a", None),
        report("b", Some("bad")),
        report("d", None),
    ];
    let next = board.next_objects(&before, &after, |_| true, &[], Some(PROGRAMMED), "t1");
    assert!(board.objects.is_empty(), "the views were taken");
    let names: Vec<&str> = next.iter().map(|o| o.object.as_str()).collect();
    assert_eq!(names, ["Route team/a", "Route team/b", "Route team/d"]);
    let a = view(&next, "a");
    assert!(
        a.conditions
            .iter()
            .all(|c| c.last_transition_time.as_deref() == Some("t0"))
    );
    assert!(condition(a, PROGRAMMED).is_true(), "kept as set");
    let b = view(&next, "b");
    let now_b = condition(b, "Accepted");
    assert_ne!(now_b.status, was_b.status);
    assert_eq!(
        now_b.last_transition_time.as_deref(),
        Some("t1"),
        "it changed"
    );
    assert_eq!(
        condition(b, PROGRAMMED).last_transition_time.as_deref(),
        Some("t0"),
        "Programmed is the status round's to change"
    );
    let d = view(&next, "d");
    assert!(
        d.conditions
            .iter()
            .all(|c| c.last_transition_time.as_deref() == Some("t1"))
    );
    assert!(d.conditions.iter().all(|c| c.type_ != PROGRAMMED));
}

#[test]
fn a_view_is_remade_when_served_or_the_translator_changes_its_mind() {
    let before = [report("a", None), report("b", None)];
    let mut board = board_of(&before);
    let failed = [(ObjectKey::route("team", "a"), "boom".to_string())];
    let served_b = |r: &Report| r.key.name.as_str() != "b";
    let next = board.next_objects(&before, &before, served_b, &failed, Some(PROGRAMMED), "t1");
    let a = view(&next, "a");
    assert!(!a.served);
    let accepted = condition(a, "Accepted");
    assert_eq!(accepted.reason, "InternalError");
    assert_eq!(accepted.last_transition_time.as_deref(), Some("t1"));
    assert!(!view(&next, "b").served, "served changed: a new view");
    // Failing again with the same report: the view and its time stay.
    board.objects = next;
    let again = board.next_objects(&before, &before, served_b, &failed, Some(PROGRAMMED), "t2");
    let accepted = condition(view(&again, "a"), "Accepted");
    assert_eq!(accepted.reason, "InternalError");
    assert_eq!(accepted.last_transition_time.as_deref(), Some("t1"));
}

#[test]
fn views_not_made_from_the_given_reports_are_paired_by_name() {
    let before = [report("a", None), report("b", None)];
    let mut board = board_of(&before);
    // The caller lost track (another length): nothing is reused, times still carry.
    let next = board.next_objects(&before[..1], &before, |_| true, &[], Some(PROGRAMMED), "t1");
    for name in ["a", "b"] {
        let v = view(&next, name);
        assert_eq!(
            condition(v, "Accepted").last_transition_time.as_deref(),
            Some("t0")
        );
        assert!(condition(v, PROGRAMMED).is_true());
    }
}
