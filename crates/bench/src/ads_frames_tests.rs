use std::time::Instant;

use portcullis_plane::publish::to_snapshot;
use portcullis_translate::{Options, translate};
use portcullis_xds::{Cache, Protocol, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::ads_clients::{DELTA_PATH, SOTW_PATH, TYPES, names};
use crate::manifests;

fn snapshot(routes: usize, services: usize) -> Snapshot {
    let (r, s) = manifests::objects(routes, services);
    let options = Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        ..Default::default()
    };
    to_snapshot(&translate(&manifests::model(&r, &s), &options))
}

async fn server(snapshot: Snapshot) -> (SocketAddr, Cache) {
    let cache = Cache::new(&prometheus::Registry::new());
    cache.set_snapshot(snapshot);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portcullis_xds::serve(
        listener,
        cache.clone(),
        std::future::pending(),
    ));
    (addr, cache)
}

fn requests(delta: bool, services: usize) -> Arc<Requests> {
    let clusters: Vec<String> = (0..services)
        .map(|i| format!("team-{}/svc-{i}", i % 20))
        .collect();
    let per_type: Vec<_> = TYPES.iter().map(|t| (*t, names(t, &clusters))).collect();
    Arc::new(Requests::new(delta, &per_type))
}

fn node(i: usize) -> Node {
    Node {
        id: format!("frames-{i}"),
        ..Default::default()
    }
}

/// Every open stream of `protocol` has ACKed, for all four types, what it was sent.
fn all_acked(cache: &Cache, protocol: Protocol) -> Vec<String> {
    cache
        .nodes()
        .into_iter()
        .filter(|n| n.protocol == protocol)
        .filter(|n| n.types.len() == 4 && n.types.values().all(|t| t.sent == t.acked))
        .map(|n| n.id)
        .collect()
}

/// Waits (up to a minute) until `count` streams of `protocol` have ACKed what they
/// were last sent, all of it differing from `before` when given.
async fn acked_by(cache: &Cache, protocol: Protocol, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = all_acked(cache, protocol).len();
        if n >= count || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_and_acks_every_type_over_sotw_and_delta() {
    // 2,000 clusters: CDS and EDS responses of ~1 MiB, past the refill of our windows
    // and past the server's window for the EDS ACK's ~50 KiB of names.
    let services = 2000;
    let (addr, cache) = server(snapshot(20, services)).await;
    let mut held = Vec::new();
    for (delta, path) in [(false, SOTW_PATH), (true, DELTA_PATH)] {
        for i in 0..5 {
            let id = if delta { 100 + i } else { i };
            let r = requests(delta, services);
            held.push(subscribe(addr, path, node(id), &TYPES, r).await.unwrap());
        }
    }
    assert_eq!(acked_by(&cache, Protocol::Sotw, 5).await, 5);
    assert_eq!(acked_by(&cache, Protocol::Delta, 5).await, 5);
    // Each EDS subscription named every cluster: the server sent each of them.
    let sent = cache.nodes();
    assert!(
        sent.iter()
            .all(|n| n.types.values().all(|t| t.sent.is_some()))
    );

    // A later push is ACKed too: the clients go on following their streams.
    let versions = |cache: &Cache| {
        cache
            .nodes()
            .into_iter()
            .map(|n| {
                n.types
                    .values()
                    .map(|t| t.acked.clone())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let before = versions(&cache);
    cache.set_snapshot(snapshot(21, services));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !(versions(&cache) != before && all_acked(&cache, Protocol::Sotw).len() == 5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = versions(&cache);
    assert_ne!(after, before, "no stream ACKed the new snapshot");
    assert_eq!(all_acked(&cache, Protocol::Sotw).len(), 5);
    assert_eq!(acked_by(&cache, Protocol::Delta, 5).await, 5);

    // Dropping a handle closes its stream.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cache.nodes().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.nodes().is_empty(), "streams left open");
}

/// A server of raw bytes: writes `greeting` to the first connection, then hands the
/// socket to `after`.
async fn raw_server<F, Fut>(greeting: Vec<u8>, after: F) -> SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.write_all(&greeting).await.unwrap();
        after(sock).await;
    });
    addr
}

fn raw_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame(&mut out, kind, flags, stream, payload);
    out
}

async fn open_against(addr: SocketAddr, services: usize) -> anyhow::Result<Held> {
    let r = requests(false, services);
    tokio::time::timeout(
        Duration::from_secs(30),
        subscribe(addr, SOTW_PATH, node(0), &TYPES, r),
    )
    .await?
}

/// Keeps a raw server's socket open a while, so that the client's error is what the
/// server sent, not the connection closing.
async fn hold(sock: TcpStream) {
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(sock);
}

#[tokio::test]
async fn a_goaway_is_an_error_that_says_why() {
    let mut greeting = raw_frame(4, 0, 0, &[]);
    let mut goaway = vec![0; 8];
    goaway.extend_from_slice(b"too many streams");
    greeting.extend(raw_frame(7, 0, 0, &goaway));
    let addr = raw_server(greeting, hold).await;
    let e = open_against(addr, 10).await.err().expect("an error");
    assert!(format!("{e:#}").contains("too many streams"), "{e:#}");
}

#[tokio::test]
async fn a_reset_stream_or_a_closed_connection_is_an_error() {
    let greeting = [raw_frame(4, 0, 0, &[]), raw_frame(3, 0, 1, &[0, 0, 0, 7])].concat();
    let addr = raw_server(greeting, hold).await;
    let e = open_against(addr, 10).await.err().expect("an error");
    assert!(format!("{e:#}").contains("reset"), "{e:#}");

    let addr = raw_server(Vec::new(), |s| async move { drop(s) }).await;
    let e = open_against(addr, 10).await.err().expect("an error");
    assert!(format!("{e:#}").contains("closed"), "{e:#}");
}

/// Reads frames from `sock` until `want` DATA bytes arrived on stream 1 (or 2 s pass
/// with nothing new); returns how many did.
async fn data_bytes(sock: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> usize {
    let mut got = 0;
    loop {
        while let Some((f, used)) = crate::h2_wire::next_frame(buf) {
            if f.kind == 0 {
                got += f.payload.len();
            }
            buf.drain(..used);
        }
        if got >= want {
            return got;
        }
        match tokio::time::timeout(Duration::from_secs(2), sock.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return got,
        }
    }
}

#[tokio::test]
async fn sends_no_more_than_the_servers_windows_allow() {
    // The server keeps HTTP/2's default windows (65,535 bytes for the connection and
    // for each stream), then grants the stream 1,000 more, then the connection 1,000,
    // then the connection 5,000.
    let (tx, rx) = oneshot::channel();
    let addr = raw_server(raw_frame(4, 0, 0, &[]), |mut s| async move {
        let mut buf = Vec::new();
        while buf.len() < PREFACE.len() {
            s.read_buf(&mut buf).await.unwrap();
        }
        buf.drain(..PREFACE.len());
        let mut got = vec![data_bytes(&mut s, &mut buf, usize::MAX).await];
        for (stream, more) in [(1, 1000u32), (0, 1000), (0, 5000)] {
            s.write_all(&raw_frame(8, 0, stream, &more.to_be_bytes()))
                .await
                .unwrap();
            got.push(data_bytes(&mut s, &mut buf, usize::MAX).await);
        }
        let _ = tx.send(got);
    })
    .await;
    // 5,000 EDS names: ~90 KiB of first requests, more than the windows allow.
    let client = tokio::spawn(open_against(addr, 5000));
    let got = rx.await.unwrap();
    client.abort();
    // A grant to one window alone sends nothing while the other is spent.
    assert_eq!(got, [65_535, 0, 1000, 0]);
}
