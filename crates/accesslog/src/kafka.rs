//! The Kafka sink: one JSON record per request (key: the request id), batches spread
//! over the topic's partitions in turn. Connection and metadata are fetched lazily
//! and dropped on a failed write, so a broker that comes back is used again.
use std::time::Duration;

use anyhow::Context;
use rskafka::{
    BackoffConfig,
    client::{
        Client, ClientBuilder,
        partition::{Compression, PartitionClient, UnknownTopicHandling},
    },
    record::Record,
};

use crate::record::AccessRecord;

/// A write that has not succeeded in this long fails (and its batch is dropped), so
/// the queue keeps moving while Kafka is away.
const DEADLINE: Duration = Duration::from_secs(5);

pub struct KafkaSink {
    brokers: Vec<String>,
    topic: String,
    partitions: Vec<PartitionClient>,
    next: usize,
}

impl KafkaSink {
    pub fn new(brokers: Vec<String>, topic: String) -> KafkaSink {
        KafkaSink {
            brokers,
            topic,
            partitions: Vec::new(),
            next: 0,
        }
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let client: Client = ClientBuilder::new(self.brokers.clone())
            .client_id("portcullis-accesslog")
            .backoff_config(BackoffConfig {
                deadline: Some(DEADLINE),
                ..Default::default()
            })
            .build()
            .await
            .with_context(|| format!("connect to Kafka {}", self.brokers.join(",")))?;
        let topics = client.list_topics().await.context("list Kafka topics")?;
        let Some(topic) = topics.into_iter().find(|t| t.name == self.topic) else {
            anyhow::bail!(
                "Kafka topic {:?} does not exist; create it (access logs are not worth auto-creating topics for)",
                self.topic
            );
        };
        let mut partitions = Vec::new();
        for p in topic.partitions {
            partitions.push(
                client
                    .partition_client(self.topic.clone(), p, UnknownTopicHandling::Error)
                    .await
                    .with_context(|| format!("Kafka partition {}/{p}", self.topic))?,
            );
        }
        anyhow::ensure!(
            !partitions.is_empty(),
            "Kafka topic {:?} has no partitions",
            self.topic
        );
        self.partitions = partitions;
        Ok(())
    }

    pub async fn write(&mut self, batch: &[AccessRecord]) -> anyhow::Result<()> {
        if self.partitions.is_empty() {
            self.connect().await?;
        }
        let now = chrono::Utc::now();
        let records = batch
            .iter()
            .map(|r| {
                Ok(Record {
                    key: (!r.request_id.is_empty()).then(|| r.request_id.clone().into_bytes()),
                    value: Some(serde_json::to_vec(r)?),
                    headers: Default::default(),
                    timestamp: now,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.next = self.next.wrapping_add(1);
        let partition = &self.partitions[self.next % self.partitions.len()];
        if let Err(e) = partition.produce(records, Compression::NoCompression).await {
            self.partitions.clear();
            return Err(e).with_context(|| format!("produce to Kafka topic {:?}", self.topic));
        }
        Ok(())
    }
}
