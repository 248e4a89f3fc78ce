//! Where records go: JSON lines on stdout or in a file, or a Kafka topic.
use std::{path::PathBuf, str::FromStr};

use anyhow::Context;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{kafka::KafkaSink, record::AccessRecord};

/// `--sink`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    Stdout,
    File(PathBuf),
    Kafka { brokers: Vec<String>, topic: String },
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "stdout" {
            return Ok(SinkSpec::Stdout);
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("file: needs a path, e.g. file:/var/log/portcullis/access.log".into());
            }
            return Ok(SinkSpec::File(path.into()));
        }
        if let Some(rest) = s.strip_prefix("kafka://") {
            let (brokers, topic) = rest.split_once('/').unwrap_or((rest, ""));
            let brokers: Vec<String> = brokers
                .split(',')
                .filter(|b| !b.is_empty())
                .map(str::to_owned)
                .collect();
            if brokers.is_empty() || topic.is_empty() || topic.contains('/') {
                return Err(format!(
                    "{s:?}: expected kafka://HOST:PORT[,HOST:PORT…]/TOPIC, e.g. kafka://kafka:9092/access-logs"
                ));
            }
            if let Some(b) = brokers.iter().find(|b| !b.contains(':')) {
                return Err(format!("{s:?}: broker {b:?} needs a port, e.g. {b}:9092"));
            }
            return Ok(SinkSpec::Kafka {
                brokers,
                topic: topic.to_owned(),
            });
        }
        Err(format!(
            "{s:?}: expected stdout, file:PATH or kafka://HOST:PORT/TOPIC"
        ))
    }
}

pub enum Sink {
    Lines(Box<dyn AsyncWrite + Send + Unpin>),
    Kafka(KafkaSink),
}

impl Sink {
    pub async fn open(spec: &SinkSpec) -> anyhow::Result<Sink> {
        Ok(match spec {
            SinkSpec::Stdout => Sink::Lines(Box::new(tokio::io::stdout())),
            SinkSpec::File(path) => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .with_context(|| {
                        format!("--sink file:{}: cannot open for appending", path.display())
                    })?;
                Sink::Lines(Box::new(file))
            }
            // Connects lazily: Kafka being down at start is a sink error, not a crash.
            SinkSpec::Kafka { brokers, topic } => {
                Sink::Kafka(KafkaSink::new(brokers.clone(), topic.clone()))
            }
        })
    }

    pub async fn write(&mut self, batch: &[AccessRecord]) -> anyhow::Result<()> {
        match self {
            Sink::Lines(w) => {
                let mut buf = Vec::with_capacity(batch.len() * 512);
                for r in batch {
                    serde_json::to_writer(&mut buf, r)?;
                    buf.push(b'\n');
                }
                w.write_all(&buf).await?;
                w.flush().await?;
                Ok(())
            }
            Sink::Kafka(k) => k.write(batch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_specs_parse_and_bad_ones_say_what_to_write() {
        assert_eq!("stdout".parse(), Ok(SinkSpec::Stdout));
        assert_eq!(
            "file:/tmp/a.log".parse(),
            Ok(SinkSpec::File("/tmp/a.log".into()))
        );
        assert_eq!(
            "kafka://k1:9092,k2:9092/access".parse(),
            Ok(SinkSpec::Kafka {
                brokers: vec!["k1:9092".into(), "k2:9092".into()],
                topic: "access".into()
            })
        );
        for (bad, hint) in [
            ("file:", "file:/var/log"),
            ("kafka://k1:9092", "kafka://HOST:PORT"),
            ("kafka://k1/access", "needs a port"),
            ("syslog", "expected stdout, file:PATH or kafka://"),
        ] {
            let e = bad.parse::<SinkSpec>().unwrap_err();
            assert!(e.contains(hint), "{bad}: {e}");
        }
    }
}
