use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::*;

/// Every batch sent, in order.
type Sent = Arc<Mutex<Vec<Vec<u32>>>>;

/// A batch sender that records each batch and answers `cmd * 2`, after taking a permit
/// from `gate` (the test decides when batches come back).
fn doubling(bounds: Bounds, gate: Arc<Semaphore>) -> (Batcher<u32, u32>, Sent) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let b = Batcher::spawn(bounds, move |cmds: Vec<u32>| {
        log.lock().push(cmds.clone());
        let gate = gate.clone();
        async move {
            gate.acquire().await.expect("open").forget();
            Ok(cmds.into_iter().map(|c| Ok(c * 2)).collect())
        }
    });
    (b, seen)
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never: {what}");
}

const BOUNDS: Bounds = Bounds {
    queue: 1000,
    max_batch: 50,
    in_flight: 1,
};

#[tokio::test]
async fn concurrent_calls_leave_together_and_each_gets_its_own_answer() {
    let gate = Arc::new(Semaphore::new(0));
    let (b, seen) = doubling(BOUNDS, gate.clone());
    let first = tokio::spawn({
        let b = b.clone();
        async move { b.call(1000).await }
    });
    until("the first call is sent", || seen.lock().len() == 1).await;
    // 99 calls while the only batch slot is taken: they queue up.
    let calls: Vec<_> = (0..99u32)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { (i, b.call(i).await) })
        })
        .collect();
    until("the calls are queued", || b.queue.capacity() == 1000 - 99).await;
    gate.add_permits(1000);
    assert_eq!(first.await.unwrap().unwrap(), 2000);
    for c in calls {
        let (i, answer) = c.await.unwrap();
        assert_eq!(answer.unwrap(), i * 2, "call {i} got another call's answer");
    }
    let sizes: Vec<usize> = seen.lock().iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [1, 50, 49],
        "queued calls are coalesced up to max_batch"
    );
    assert_eq!(seen.lock()[1][..3], [0, 1, 2], "in queue order");
}

#[tokio::test]
async fn a_flood_beyond_the_queue_is_refused_at_once_and_service_resumes() {
    let gate = Arc::new(Semaphore::new(0));
    let bounds = Bounds {
        queue: 8,
        max_batch: 4,
        in_flight: 1,
    };
    let (b, seen) = doubling(bounds, gate.clone());
    let held = tokio::spawn({
        let b = b.clone();
        async move { b.call(0).await }
    });
    until("the first call is sent", || seen.lock().len() == 1).await;
    let flood: Vec<_> = (1..=1000u32)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.call(i).await })
        })
        .collect();
    until("the flood beyond the queue is refused", || {
        flood.iter().filter(|f| f.is_finished()).count() >= 1000 - 8
    })
    .await;
    let (refused, queued): (Vec<_>, Vec<_>) = flood.into_iter().partition(|f| f.is_finished());
    for f in refused {
        // Finished while the only batch is held: refused, not answered.
        assert!(matches!(f.await.unwrap(), Err(StoreError::Overloaded)));
    }
    assert_eq!(queued.len(), 8, "the queue holds its bound, no more");
    gate.add_permits(100);
    assert_eq!(held.await.unwrap().unwrap(), 0);
    for q in queued {
        q.await.unwrap().expect("a queued call is answered");
    }
    assert_eq!(b.call(7).await.unwrap(), 14, "the batcher keeps answering");
}

#[tokio::test]
async fn calls_whose_caller_gave_up_are_not_sent() {
    let gate = Arc::new(Semaphore::new(0));
    let (b, seen) = doubling(BOUNDS, gate.clone());
    let held = tokio::spawn({
        let b = b.clone();
        async move { b.call(0).await }
    });
    until("the first call is sent", || seen.lock().len() == 1).await;
    for i in 1..=3 {
        let gave_up = tokio::time::timeout(Duration::from_millis(5), b.call(i)).await;
        assert!(gave_up.is_err(), "the held batch blocks call {i}");
    }
    let live = tokio::spawn({
        let b = b.clone();
        async move { b.call(4).await }
    });
    until("the live call is queued", || b.queue.capacity() == 1000 - 4).await;
    gate.add_permits(10);
    held.await.unwrap().unwrap();
    assert_eq!(live.await.unwrap().unwrap(), 8);
    assert_eq!(seen.lock()[1], [4], "only the call still awaited is sent");
}

#[tokio::test]
async fn a_failed_or_short_batch_fails_every_call_in_it() {
    let b: Batcher<u32, u32> = Batcher::spawn(BOUNDS, |cmds: Vec<u32>| async move {
        if cmds[0] == 1 {
            Err(StoreError::BadReply("connection lost".into()))
        } else if cmds[0] == 2 {
            Ok(Vec::new())
        } else {
            Ok(vec![Ok(0)])
        }
    });
    let e = b.call(1).await.unwrap_err();
    assert!(e.to_string().contains("connection lost"), "{e}");
    // Fewer answers than commands: the caller does not get a stray answer.
    let e = b.call(2).await.unwrap_err();
    assert!(matches!(e, StoreError::BadReply(_)), "{e}");
    assert_eq!(b.call(3).await.unwrap(), 0, "the next batch is answered");
}
