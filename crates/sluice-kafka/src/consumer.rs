//! A consumer-group member for `sluice stream`.
//!
//! Auto-commit is off: the lake records progress, and offsets are committed to Kafka only so
//! that lag can be watched. Rebalances are reported as events that the stream loop applies
//! between batches (dropping the buffers of revoked partitions); librdkafka's callbacks run
//! inside `poll` and must not block, so they only append to a list (one entry per rebalance,
//! not per record) that the loop drains.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::Message;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::client::{REACHABILITY_TIMEOUT, metadata_of};

/// How often a seek refused for a partition not ready yet is tried again, and the pause
/// between tries (5 s in all).
const SEEK_TRIES: u32 = 50;
const SEEK_RETRY_PAUSE: Duration = Duration::from_millis(100);
use crate::{ClientOptions, KafkaError};

/// A change in the partitions this member owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These (topic, partition) pairs are now ours.
    Assigned(Vec<(String, i32)>),
    /// These are no longer ours: drop their buffered rows.
    Revoked(Vec<(String, i32)>),
}

/// How often librdkafka reports statistics, from which [`GroupConsumer::log_ends`] comes.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// Per (topic, partition), the log end the broker last reported to this member.
type LogEnds = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Forwards rebalances and log ends from librdkafka's callbacks to the stream loop.
pub struct GroupContext {
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    log_ends: LogEnds,
}

impl GroupContext {
    fn push(&self, event: RebalanceEvent) {
        self.events
            .lock()
            .expect("no panics while holding the lock")
            .push(event);
    }
}

impl ClientContext for GroupContext {
    serves_msk_iam_tokens!();

    /// Keeps each fetched partition's high watermark: lag comes from it without asking the
    /// broker (librdkafka learns it from its fetch responses anyway).
    fn stats(&self, statistics: Statistics) {
        let mut ends = self
            .log_ends
            .lock()
            .expect("no panics while holding the lock");
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                if partition >= 0 && stats.hi_offset >= 0 {
                    ends.insert((topic.clone(), partition), stats.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.push(RebalanceEvent::Revoked(pairs(list)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                self.push(RebalanceEvent::Assigned(pairs(list)));
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "Rebalance failed."),
            Rebalance::Revoke(_) => {}
        }
    }
}

fn pairs(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// A record read by a [`GroupConsumer`], borrowed from it until the next read.
pub struct Consumed<'a>(BorrowedMessage<'a>);

impl Consumed<'_> {
    /// The topic it was read from.
    pub fn topic(&self) -> &str {
        self.0.topic()
    }

    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.0.partition()
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.0.offset()
    }

    /// Its key, if it has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }

    /// Its value; `None` for a tombstone.
    pub fn payload(&self) -> Option<&[u8]> {
        self.0.payload()
    }

    /// Its timestamp in milliseconds since the epoch, if the producer or broker set one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.0.timestamp().to_millis()
    }

    /// Its headers in order, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0
            .headers()
            .into_iter()
            .flat_map(|headers| headers.iter().map(|h| (h.key, h.value)))
    }

    /// The value of its first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(key, _)| *key == name)?.1
    }
}

/// One member of a consumer group.
pub struct GroupConsumer {
    inner: StreamConsumer<GroupContext>,
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    log_ends: LogEnds,
    brokers: String,
}

impl GroupConsumer {
    /// Joins `group` (as static member `instance_id` when given) and subscribes to `topics`,
    /// after checking that each exists. Blocking (metadata requests): call at start-up.
    pub fn join(
        options: &ClientOptions,
        group: &str,
        instance_id: Option<&str>,
        topics: &[&str],
    ) -> Result<Self, KafkaError> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let log_ends = LogEnds::default();
        let mut config = options.config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            // A crashed member's partitions move on after this long. librdkafka's 45 s default
            // leaves them idle for most of a minute; a Rust process has no GC pauses to ride out.
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "3000"),
            // Incremental rebalances: a member joining or leaving moves only the partitions
            // that change hands, so the other lanes keep their buffers (eager rebalancing
            // revokes everything). The assignor runs in the clients; tansu 0.6 relays it.
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
        ]);
        if let Some(instance_id) = instance_id {
            config.set("group.instance.id", instance_id);
        }
        let inner: StreamConsumer<GroupContext> = config
            .create_with_context(GroupContext {
                events: events.clone(),
                log_ends: log_ends.clone(),
            })
            .map_err(|source| KafkaError::client(&options.brokers, source))?;
        for topic in topics {
            metadata_of(inner.client(), &options.brokers, Some(topic))?;
        }
        inner
            .subscribe(topics)
            .map_err(|source| KafkaError::Consume {
                context: format!("subscribe to {topics:?}"),
                source,
            })?;
        Ok(Self {
            inner,
            events,
            log_ends,
            brokers: options.brokers.clone(),
        })
    }

    /// Waits up to `wait` for a first message, then takes whatever else is ready, up to `max`.
    /// An empty batch means nothing arrived in time.
    ///
    /// Consumption errors (brokers down, a partition leader moving) are logged and the batch
    /// ends there: librdkafka reconnects and resumes fetching by itself. Only a fatal error of
    /// the client is returned.
    pub async fn recv_batch(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Consumed<'_>>, KafkaError> {
        let mut stream = self.inner.stream();
        let mut batch = Vec::new();
        let mut next = match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(first)) => Some(first),
            Ok(None) | Err(_) => None,
        };
        while let Some(result) = next {
            match result {
                Ok(message) => batch.push(Consumed(message)),
                Err(source) if source.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) => {
                    return Err(KafkaError::Consume {
                        context: format!("from {}", self.brokers),
                        source,
                    });
                }
                Err(source) => {
                    tracing::warn!(brokers = %self.brokers, error = %source, "Consuming failed; librdkafka retries.");
                    break;
                }
            }
            if batch.len() >= max {
                break;
            }
            next = stream.next().now_or_never().flatten();
        }
        Ok(batch)
    }

    /// Rebalances that happened since the last call.
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(
            &mut *self
                .events
                .lock()
                .expect("no panics while holding the lock"),
        )
    }

    /// Per (topic, partition) fetched, the log end (next offset to be written) as the broker
    /// last reported it, every few seconds; partitions not fetched yet are missing.
    pub fn log_ends(&self) -> HashMap<(String, i32), i64> {
        self.log_ends
            .lock()
            .expect("no panics while holding the lock")
            .clone()
    }

    /// Moves the position of a partition, so the next record read is `offset` (or the log
    /// start when `None`). Blocking (up to the reachability timeout while the broker is away).
    pub fn seek(&self, topic: &str, partition: i32, offset: Option<i64>) -> Result<(), KafkaError> {
        let to = offset.map_or(Offset::Beginning, Offset::Offset);
        // A partition assigned a moment ago may not take a seek yet (librdkafka answers
        // "Erroneous state" until it has a fetch position): that passes, so it is retried.
        let not_ready = RDKafkaErrorCode::State.to_string();
        let mut tries = 0;
        loop {
            match self.inner.seek(topic, partition, to, REACHABILITY_TIMEOUT) {
                Err(rdkafka::error::KafkaError::Seek(reason))
                    if reason.contains(&not_ready) && tries < SEEK_TRIES =>
                {
                    tries += 1;
                    std::thread::sleep(SEEK_RETRY_PAUSE);
                }
                done => {
                    return done.map_err(|source| KafkaError::Consume {
                        context: format!("seek {topic}/{partition} to {to:?}"),
                        source,
                    });
                }
            }
        }
    }

    /// Leaves the group and joins it again with the same subscription, as a new member (a
    /// static member keeps its `group.instance.id`). For a member that a broker left without
    /// partitions. Blocking.
    pub fn rejoin(&self) -> Result<(), KafkaError> {
        let error = |source| KafkaError::Consume {
            context: "rejoining the group".into(),
            source,
        };
        let subscription = self.inner.subscription().map_err(error)?;
        let topics: Vec<String> = subscription
            .elements()
            .iter()
            .map(|e| e.topic().to_string())
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner.unsubscribe();
        self.inner.subscribe(&topics).map_err(error)
    }

    /// Records the group's position (next offset to read) for lag metrics; not a source of truth.
    pub fn commit_positions(&self, positions: &[(String, i32, i64)]) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in positions {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|source| KafkaError::Consume {
                    context: format!("commit {topic}/{partition}"),
                    source,
                })?;
        }
        self.inner
            .commit(&list, CommitMode::Async)
            .map_err(|source| KafkaError::Consume {
                context: "commit positions".into(),
                source,
            })
    }
}
