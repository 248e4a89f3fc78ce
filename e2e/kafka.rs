//! The Kafka sink against a real Kafka-compatible broker (tansu, built from crates.io
//! and started here): records of requests through Envoy arrive on the topic, keyed by
//! request id. Opt-in (`make test-kafka`): building tansu takes longer than the rest
//! of the suite, see docs/observability.md.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use rskafka::client::{ClientBuilder, partition::UnknownTopicHandling};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::access_log::AccessLog;
use crate::harness::*;

const TOPIC: &str = "access-logs";

struct Broker {
    addr: String,
    _child: Child,
}

async fn broker() -> Broker {
    let bin = std::env::var("TANSU_BIN")
        .expect("TANSU_BIN: the tansu broker binary (make test-kafka installs and sets it)");
    let port = crate::harness::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(bin)
        .arg("broker")
        .args(["--listener-url", &format!("tcp://{addr}")])
        .args(["--advertised-listener-url", &format!("tcp://{addr}")])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("tansu starts");
    // Ready once it answers a topic creation.
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tansu exited ({status}); its error is above");
        }
        let created = async {
            let client = ClientBuilder::new(vec![addr.clone()]).build().await?;
            client
                .controller_client()?
                .create_topic(TOPIC, 1, 1, 5_000)
                .await
        };
        match tokio::time::timeout(Duration::from_secs(10), created).await {
            Ok(Ok(())) => break,
            other => assert!(Instant::now() < deadline, "tansu not ready: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Broker {
        addr,
        _child: child,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_a_kafka_topic_keyed_by_request_id() {
    let kafka = broker().await;
    let als = AccessLog::start(&format!("kafka://{}/{TOPIC}", kafka.addr), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    write_atomic(
        &dir.path().join("all.yaml"),
        &(service_yaml("echo", echo("echo").await)
            + &route_yaml(
                "kafka",
                "{match: {paths: [{prefix: /}]}, backends: [{service: echo}]}",
            )),
    );
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        access_log_service: Some(als.grpc.to_string()),
        ..Default::default()
    };
    let plane = Plane::start_with(dir.path(), None, options).await;
    let gw = Gateway::start(plane.xds, "kafka", false).await;
    plane.wait_synced(None, STARTUP).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = gw.get("x.test", &format!("/k/{i}")).await;
        assert_eq!(r.status, 200);
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }

    let client = ClientBuilder::new(vec![kafka.addr.clone()])
        .build()
        .await
        .unwrap();
    let partition = client
        .partition_client(TOPIC, 0, UnknownTopicHandling::Error)
        .await
        .unwrap();
    let deadline = Instant::now() + STARTUP;
    let records = loop {
        let (records, _) = partition.fetch_records(0, 1..1_000_000, 500).await.unwrap();
        if records.len() >= ids.len() {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} records on the topic",
            records.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(records.len(), ids.len());
    for (r, id) in records.iter().zip(&ids) {
        let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
        assert_eq!(&key, id, "keyed by request id, in request order");
        let value: Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(value["request_id"], id.as_str());
        assert_eq!(value["route"], "e2e/kafka");
        assert_eq!(value["status"], 200);
    }
    let metrics = als.metrics_text().await;
    assert!(
        metrics.contains("portcullis_accesslog_records_written_total 3"),
        "{metrics}"
    );
}
