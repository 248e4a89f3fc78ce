use super::*;

const SEC: u64 = 1000;

fn w(requests: u32, per_ms: u64, algorithm: Algorithm) -> Window {
    Window {
        requests,
        per_ms,
        algorithm,
    }
}

#[test]
fn fixed_window_fits_until_the_limit_and_retries_at_the_bucket_end() {
    let win = w(10, SEC, Algorithm::Fixed);
    assert!(fits(&win, Counts { prev: 0, curr: 9 }, 5_300, 1));
    let v = evaluate(&win, Counts { prev: 0, curr: 10 }, 5_300, 1, false);
    assert!(v.over);
    assert_eq!(v.retry_after_ms, 700);
    assert_eq!(retry_after_secs(v.retry_after_ms), 1);
}

#[test]
fn sliding_window_counts_the_part_of_the_previous_bucket_still_inside() {
    let win = w(10, SEC, Algorithm::Sliding);
    // 25% into the bucket: 75% of the previous 8 (=6) + 3 = 9, room for exactly 1.
    let c = Counts { prev: 8, curr: 3 };
    assert!(fits(&win, c, 10_250, 1));
    assert!(!fits(&win, c, 10_250, 2));
    let v = evaluate(&win, c, 10_250, 1, true);
    assert_eq!((v.over, v.remaining), (false, 0));
}

#[test]
fn sliding_retry_after_waits_for_enough_of_the_previous_bucket_to_slide_out() {
    let win = w(10, 10 * SEC, Algorithm::Sliding);
    // At 1s into the bucket: 0.9·10 + 1 = 10; one more needs prev·(per−e) ≤ (10−1−1)·per,
    // i.e. e ≥ 2s: 1 s from now.
    let c = Counts { prev: 10, curr: 1 };
    let v = evaluate(&win, c, 101 * SEC, 1, false);
    assert!(v.over);
    assert_eq!(v.retry_after_ms, SEC);
    // And it does fit then.
    assert!(fits(&win, c, 102 * SEC, 1));
    assert!(!fits(&win, c, 102 * SEC - 1, 1));
}

#[test]
fn sliding_retry_after_into_the_next_bucket_when_this_one_is_full() {
    let win = w(10, 10 * SEC, Algorithm::Sliding);
    let c = Counts { prev: 0, curr: 10 };
    let v = evaluate(&win, c, 108 * SEC, 1, false);
    // 2s to the bucket end, then 10·(per−g) ≤ 9·per → g ≥ 1s.
    assert_eq!(v.retry_after_ms, 3 * SEC);
    assert_eq!(retry_after_secs(v.retry_after_ms), 3);
    assert!(fits(&win, Counts { prev: 10, curr: 0 }, 111 * SEC, 1));
    assert!(!fits(&win, Counts { prev: 10, curr: 0 }, 111 * SEC - 1, 1));
}

#[test]
fn retry_after_is_whole_seconds_at_least_one() {
    assert_eq!(retry_after_secs(0), 1);
    assert_eq!(retry_after_secs(1), 1);
    assert_eq!(retry_after_secs(1000), 1);
    assert_eq!(retry_after_secs(1001), 2);
}

#[test]
fn more_hits_than_the_limit_never_fit() {
    let win = w(3, SEC, Algorithm::Sliding);
    let v = evaluate(&win, Counts::default(), 0, 4, false);
    assert!(v.over);
    assert_eq!(v.retry_after_ms, SEC);
}
