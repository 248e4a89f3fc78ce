use super::*;
use crate::limit::Window;

fn check(key: &str, per_ms: u64, algorithm: Algorithm, quota_group: u32) -> Check {
    Check {
        key: key.into(),
        window: Window {
            requests: 5,
            per_ms,
            algorithm,
        },
        hits: 2,
        enforce: false,
        quota_group,
    }
}

/// Collects what `script_args` writes, to read the layout back.
#[derive(Default)]
struct Written {
    keys: Vec<String>,
    args: Vec<u64>,
}

impl ScriptArgs for Written {
    fn key(&mut self, k: &str) {
        assert!(self.args.is_empty(), "a key after the arguments");
        self.keys.push(k.into());
    }
    fn arg(&mut self, a: u64) {
        self.args.push(a);
    }
}

#[test]
fn a_batch_lays_out_every_key_first_then_each_requests_arguments() {
    let a = check("prl:{a}:1000", 1000, Algorithm::Sliding, 0);
    let b = check("prl:{b}:60000", 60_000, Algorithm::Fixed, 3);
    let now = 120_250;
    let calls = [
        Call::new(now, &[&a, &b], Counting::All),
        Call::new(now, &[&a], Counting::Admitted),
    ];
    let mut w = Written::default();
    script_args(&mut w, &calls);
    assert_eq!(
        w.keys,
        [
            "prl:{a}:1000:120",
            "prl:{a}:1000:119",
            "prl:{b}:60000:2",
            "prl:{b}:60000:1",
            "prl:{a}:1000:120",
            "prl:{a}:1000:119",
        ]
    );
    #[rustfmt::skip]
    assert_eq!(w.args, [
        2,
        1, 2, 5, 1000, 250, 1, 0, 2, 0, 5, 60_000, 250, 0, 0, 2, 3,
        0, 1, 5, 1000, 250, 1, 0, 2, 0,
    ]);
}

#[test]
fn a_reply_is_cut_per_request_and_a_refused_request_fails_alone() {
    let a = check("prl:{a}:1000", 1000, Algorithm::Sliding, 0);
    let calls = [
        Call::new(0, &[&a, &a], Counting::Admitted),
        Call::new(0, &[&a], Counting::Admitted),
        Call::new(0, &[&a], Counting::Admitted),
    ];
    let answers = split(vec![1, 4, 5, 6, 7, -1, 0, 0, 0, 8, 9], &calls).unwrap();
    assert_eq!(answers[0].as_ref().unwrap(), &[1, 4, 5, 6, 7]);
    assert!(matches!(answers[1], Err(StoreError::BadReply(_))));
    assert_eq!(answers[2].as_ref().unwrap(), &[0, 8, 9]);
}

#[test]
fn a_reply_of_the_wrong_length_fails_the_whole_batch() {
    let a = check("prl:{a}:1000", 1000, Algorithm::Sliding, 0);
    let calls = [Call::new(0, &[&a], Counting::Admitted)];
    for out in [vec![], vec![1, 2], vec![1, 2, 3, 4]] {
        let e = split(out, &calls).expect_err("refused");
        assert!(e.to_string().contains("expected"), "{e}");
    }
}
