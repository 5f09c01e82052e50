//! Topic administration through the Kafka admin API (tansu does not auto-create topics).
//!
//! Listing and describing are blocking librdkafka calls: run them with
//! `tokio::task::spawn_blocking` from async code.

use std::collections::HashMap;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{BasicContext, REACHABILITY_TIMEOUT, metadata_of};
use crate::{ClientOptions, KafkaError};

/// Whether a create request made the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The topic is new.
    Created,
    /// It was there already (left as it was).
    AlreadyExisted,
}

/// Creates a topic; an existing one is reported, not changed.
pub async fn create_topic(
    options: &ClientOptions,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<Created, KafkaError> {
    if options.uses_msk_iam() {
        return Err(KafkaError::MskIam {
            reason: format!(
                "creating topic {topic} is not built over AWS MSK IAM (rdkafka's admin client \
                 serves no token requests): create it with the AWS console or CLI, or \
                 kafka-topics.sh"
            ),
        });
    }
    let admin: AdminClient<BasicContext> = options.create(&[])?;
    let admin_error = |reason: String| KafkaError::Admin {
        action: format!("creating topic {topic}"),
        brokers: options.brokers.clone(),
        reason,
    };
    let request = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let wait = AdminOptions::new().request_timeout(Some(REACHABILITY_TIMEOUT));
    let results = admin
        .create_topics([&request], &wait)
        .await
        .map_err(|err| match err {
            rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut) => {
                KafkaError::Unreachable {
                    brokers: options.brokers.clone(),
                    timeout_s: REACHABILITY_TIMEOUT.as_secs(),
                    reason: "the create-topics request timed out".into(),
                }
            }
            other => admin_error(other.to_string()),
        })?;
    let created = match results.into_iter().next() {
        Some(Ok(_)) => Created::Created,
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Created::AlreadyExisted,
        Some(Err((_, code))) => return Err(admin_error(code.to_string())),
        None => return Err(admin_error("the broker gave no result".into())),
    };
    wait_until_visible(options, topic).await?;
    Ok(created)
}

/// Waits until `topic` shows in the cluster's metadata, for up to the reachability timeout. A
/// broker may answer a create-topics request before its metadata lists the topic (tansu 0.6
/// did, under load): a producer started right after would be told it does not exist.
async fn wait_until_visible(options: &ClientOptions, topic: &str) -> Result<(), KafkaError> {
    let (owned, name) = (options.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let client = owned.base_consumer(&[], BasicContext)?;
        let started = std::time::Instant::now();
        loop {
            match metadata_of(client.client(), &owned.brokers, Some(&name)) {
                Err(KafkaError::UnknownTopic { .. } | KafkaError::Unreachable { .. })
                    if started.elapsed() < REACHABILITY_TIMEOUT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .unwrap_or_else(|err| {
        Err(KafkaError::Admin {
            action: format!("looking for topic {topic}"),
            brokers: options.brokers.clone(),
            reason: err.to_string(),
        })
    })
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Its partitions, by id.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition's leader and offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition id.
    pub id: i32,
    /// Broker id of the leader.
    pub leader: i32,
    /// First offset still in the log.
    pub low: i64,
    /// Offset the next record will get (the high watermark).
    pub high: i64,
    /// The consumer group's committed offset, when a group was asked about.
    pub committed: Option<i64>,
}

impl PartitionInfo {
    /// Records not yet consumed by the group (high watermark − committed offset).
    pub fn lag(&self) -> Option<i64> {
        self.committed
            .map(|committed| (self.high - committed).max(0))
    }
}

/// Names of all topics on the cluster, sorted. Blocking.
pub fn list_topics(options: &ClientOptions) -> Result<Vec<String>, KafkaError> {
    let metadata = options.fetch_metadata(None)?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// Partitions of a topic with their offsets, and a group's committed offsets if `group` is
/// given. Blocking.
pub fn describe_topic(
    options: &ClientOptions,
    topic: &str,
    group: Option<&str>,
) -> Result<TopicInfo, KafkaError> {
    let settings: Vec<(&str, &str)> = group.map(|g| vec![("group.id", g)]).unwrap_or_default();
    let consumer = options.base_consumer(&settings, BasicContext)?;
    let metadata = metadata_of(consumer.client(), &options.brokers, Some(topic))?;
    let described = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("metadata_of checked the topic");
    let consume_error = |source| KafkaError::Consume {
        context: format!("offsets of {topic}"),
        source,
    };
    let mut partitions = Vec::new();
    for partition in described.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), REACHABILITY_TIMEOUT)
            .map_err(consume_error)?;
        partitions.push(PartitionInfo {
            id: partition.id(),
            leader: partition.leader(),
            low,
            high,
            committed: None,
        });
    }
    partitions.sort_by_key(|p| p.id);
    if group.is_some() {
        let mut wanted = TopicPartitionList::new();
        for p in &partitions {
            wanted.add_partition(topic, p.id);
        }
        let committed = consumer
            .committed_offsets(wanted, REACHABILITY_TIMEOUT)
            .map_err(consume_error)?;
        for p in &mut partitions {
            p.committed = committed
                .find_partition(topic, p.id)
                .and_then(|e| match e.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
        }
    }
    Ok(TopicInfo {
        name: topic.to_string(),
        partitions,
    })
}

/// The offsets a partition's log holds: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRange {
    /// The first offset still in the log.
    pub start: i64,
    /// The offset after the last record.
    pub end: i64,
}

/// The range of each partition's log, its end read from the log itself. The high watermark
/// alone is not enough: tansu 0.6 reports the last batch's base offset + 1 there, not its last
/// offset + 1. So each partition is read from `high − 1` to its end; on a broker that reports
/// the true high watermark this reads at most one record per partition. Blocking.
pub fn log_ranges(
    options: &ClientOptions,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), LogRange>, KafkaError> {
    let consumer = end_of_partition_reader(options, "sluice-log-end")?;
    let error = |context: String| move |source| KafkaError::Consume { context, source };
    let mut ends = HashMap::new();
    let mut to_read = TopicPartitionList::new();
    for (topic, partition) in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, REACHABILITY_TIMEOUT)
            .map_err(error(format!("offsets of {topic}/{partition}")))?;
        ends.insert(
            (topic.clone(), *partition),
            LogRange {
                start: low,
                end: high,
            },
        );
        if high > low {
            to_read
                .add_partition_offset(topic, *partition, Offset::Offset(high - 1))
                .map_err(error(format!("read the end of {topic}/{partition}")))?;
        }
    }
    let mut remaining = to_read.count();
    if remaining == 0 {
        return Ok(ends);
    }
    consumer
        .assign(&to_read)
        .map_err(error("assign partitions to read their ends".into()))?;
    let deadline = std::time::Instant::now() + REACHABILITY_TIMEOUT;
    while remaining > 0 && std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(200)) {
            Some(Ok(message)) => {
                use rdkafka::Message;
                if let Some(range) =
                    ends.get_mut(&(message.topic().to_string(), message.partition()))
                {
                    range.end = range.end.max(message.offset() + 1);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => remaining -= 1,
            Some(Err(source)) => {
                return Err(KafkaError::Consume {
                    context: "reading partition ends".into(),
                    source,
                });
            }
            None => {}
        }
    }
    Ok(ends)
}

/// A consumer that reads assigned partitions to their end and says so (partition EOF), with
/// no group membership or commits (`group` only names it).
pub(crate) fn end_of_partition_reader(
    options: &ClientOptions,
    group: &str,
) -> Result<BaseConsumer<EndOfPartitionExpected>, KafkaError> {
    options.base_consumer(
        &[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            // Reaching the end is the point: do not let the broker hold an empty fetch for
            // its default 500 ms before saying so.
            ("fetch.wait.max.ms", "10"),
        ],
        EndOfPartitionExpected,
    )
}

/// The client context of [`log_ranges`]: reaching a partition's end is what it asks for, so
/// librdkafka's end-of-partition notices are not logged as errors; other errors still are.
pub(crate) struct EndOfPartitionExpected;

impl rdkafka::ClientContext for EndOfPartitionExpected {
    serves_msk_iam_tokens!();

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            rdkafka::error::KafkaError::PartitionEOF(_)
                | rdkafka::error::KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::warn!(%error, reason, "Kafka client error while reading partition ends.");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndOfPartitionExpected {}
