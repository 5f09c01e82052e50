//! Getting accepted records into Kafka — or, when Kafka is down or too slow, into the spool and
//! then into Kafka in order.
//!
//! Normally a request's records are produced (idempotent, acks=all) and the request waits for
//! every acknowledgement. If they do not all come within `produce_timeout`, the records not yet
//! acknowledged are appended to the spool, the request is answered "spooled", and the gateway
//! switches to spooling: later requests go straight to the spool, so nothing overtakes what is
//! already there. The drainer delivers spooled batches oldest first; a batch whose records are
//! still in the producer's queue is not sent again, it is waited for (librdkafka retries it with
//! no local timeout, and the idempotent producer keeps retries from doubling it). Once the spool
//! is empty the gateway produces directly again.
//!
//! When the broker goes away, the producer is replaced by a fresh one (a new producer id) and
//! the old one's queue is purged: those records go to the spool and are sent again by the new
//! producer. An idempotent producer that lives through a broker restart would otherwise carry
//! its old sequence state to a broker that may have lost it (tansu 0.6 on SQLite panics on the
//! bumped epoch that follows). A purged record is in doubt (its request may have been written
//! by the broker before the connection dropped, and librdkafka may have queued it again): before
//! it is sent again, its partition is read back for its id ([`crate::in_doubt`]), and a record
//! found there counts as delivered.
//!
//! After a crash the spool's pending batches are sent again. A batch that reached Kafka just
//! before the crash, without its delivered mark, is then in the topic twice. So delivery is
//! at least once across a kill -9 of the gateway, and exactly once otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use sluice_kafka::client::BasicContext;
use sluice_kafka::{ClientOptions, KafkaError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Record;
use crate::events::{InDoubtSettled, SpoolHolds};
use crate::in_doubt::{InDoubt, RECORD_ID_HEADER, RecordIds, landed};
use crate::metrics::Metrics;
use crate::spool::{Spool, SpoolError};

/// How long the drainer waits before sending refused records again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How often a full producer queue is looked at again.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(2);

/// Where a request's accepted records are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Whether any had to be spooled.
    pub spooled: usize,
    /// Records Kafka refused for good (too large for the broker, an unknown topic), by index.
    pub refused: Vec<(usize, String)>,
}

/// Why a record did not reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Taken back from a producer that was replaced: look for it before sending it again. A
    /// record purged from the queue is in doubt too: librdkafka puts the records of a request
    /// back in the queue when the connection drops, and the broker may have written them.
    InDoubt(InDoubt),
    /// Kafka refused it.
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InDoubt(_) => f.write_str(
                "Kafka went away while the record was being produced: it may be in the topic already",
            ),
            Self::Refused(err) => f.write_str(err),
        }
    }
}

/// One delivery outcome: the record's index in its batch, and why it failed if it did.
type Outcome = (usize, Result<(), Failure>);

/// Records handed to the producer whose acknowledgements are still outstanding, spooled under
/// one batch, with the batch positions of those never handed over and of those in doubt.
struct InFlight {
    waiting: BoxStream<'static, Outcome>,
    unsent: Vec<usize>,
    in_doubt: Vec<(usize, InDoubt)>,
}

/// The producer, the spool and the switch between them.
pub struct Delivery {
    client: ClientOptions,
    producer: RwLock<FutureProducer<BasicContext>>,
    ids: RecordIds,
    spool: Arc<Mutex<Spool>>,
    /// True while the spool holds batches not yet in Kafka; appends happen under this lock.
    spooling: tokio::sync::Mutex<bool>,
    in_flight: Mutex<HashMap<u64, InFlight>>,
    /// The last append was refused for lack of room (cleared when room is made).
    spool_full: AtomicBool,
    wake: Notify,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Delivery {
    /// An idempotent acks=all producer with no local message timeout, in front of `spool`.
    pub fn new(
        client: &ClientOptions,
        spool: Spool,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let producer = new_producer(client)?;
        let spooling = spool.pending() > 0;
        metrics.emit(SpoolHolds {
            pending: spool.pending(),
            bytes: spool.bytes(),
        });
        Ok(Self {
            client: client.clone(),
            producer: RwLock::new(producer),
            ids: RecordIds::default(),
            spool: Arc::new(Mutex::new(spool)),
            spooling: tokio::sync::Mutex::new(spooling),
            in_flight: Mutex::default(),
            spool_full: AtomicBool::new(false),
            wake: Notify::new(),
            timeout,
            metrics,
        })
    }

    /// The current producer, for broker probes.
    pub fn producer(&self) -> FutureProducer<BasicContext> {
        self.producer.read().expect("producer").clone()
    }

    /// The broker went away: a fresh producer takes over, and what the old one still holds is
    /// purged (its records come back as [`Failure::InDoubt`]).
    pub async fn replace_producer(&self) -> Result<(), KafkaError> {
        let fresh = new_producer(&self.client)?;
        let old = std::mem::replace(&mut *self.producer.write().expect("producer"), fresh);
        tokio::task::spawn_blocking(move || {
            old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        })
        .await
        .expect("purge does not panic");
        tracing::info!("Kafka is unreachable: a fresh producer will send what the old one held");
        Ok(())
    }

    /// Whether the spool has room for more: not refusing appends, and below its limit.
    pub fn spool_has_room(&self) -> bool {
        let spool = self.spool.lock().expect("spool");
        !self.spool_full.load(Ordering::Relaxed) && spool.bytes() < spool.max_bytes()
    }

    /// Makes the spool's appends durable (the `fsync = "<interval>"` policy calls this).
    pub async fn sync_spool(&self) -> Result<(), SpoolError> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.lock().expect("spool").sync())
            .await
            .expect("spool sync does not panic")
    }

    /// Delivers one request's records to `topic`: into Kafka, or into the spool. Fails only when
    /// the spool is needed and cannot take them (nothing was produced then).
    pub async fn deliver(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Delivered, SpoolError> {
        {
            let spooling = self.spooling.lock().await;
            if *spooling {
                let n = records.len();
                self.append(topic, records).await?;
                drop(spooling);
                return Ok(Delivered {
                    spooled: n,
                    refused: Vec::new(),
                });
            }
        }
        let deadline = Instant::now() + self.timeout;
        let mut waiting = FuturesUnordered::new();
        let mut unsent = Vec::new();
        let mut refused = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if !unsent.is_empty() {
                unsent.push(i);
                continue;
            }
            match self.send(topic, record, Some(deadline)).await {
                Send::Handed(delivery) => waiting.push(delivery.map(move |r| (i, r)).boxed()),
                Send::QueueStillFull => unsent.push(i),
                Send::Refused(err) => refused.push((i, err)),
            }
        }
        let mut in_doubt = Vec::new();
        let mut done = vec![false; records.len()];
        for (i, _) in &refused {
            done[*i] = true;
        }
        loop {
            tokio::select! {
                next = waiting.next() => match next {
                    None => break,
                    Some((i, Ok(()))) => done[i] = true,
                    Some((i, Err(Failure::InDoubt(d)))) => in_doubt.push((i, d)),
                    Some((i, Err(Failure::Refused(err)))) => {
                        done[i] = true;
                        refused.push((i, err));
                    }
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        refused.sort_unstable();
        unsent.sort_unstable();
        if waiting.is_empty() && unsent.is_empty() && in_doubt.is_empty() {
            return Ok(Delivered {
                spooled: 0,
                refused,
            });
        }
        // Kafka is slow or away: what is not acknowledged yet goes to the spool.
        let left: Vec<usize> = (0..records.len()).filter(|&i| !done[i]).collect();
        let position: HashMap<usize, usize> =
            left.iter().enumerate().map(|(j, &i)| (i, j)).collect();
        let batch: Vec<Record> = left.iter().map(|&i| records[i].clone()).collect();
        let spooled = batch.len();
        let mut spooling = self.spooling.lock().await;
        let seq = match self.append(topic, batch).await {
            Ok(seq) => seq,
            Err(err) => {
                // The spool cannot take them: wait for Kafka after all, however long it takes.
                drop(spooling);
                tracing::warn!(error = %err, "Kafka is slow and the spool cannot take the records: waiting for Kafka");
                let never_handed: Vec<Record> =
                    unsent.iter().map(|&i| records[i].clone()).collect();
                let mut rest: SelectAll<BoxStream<'static, Outcome>> = SelectAll::new();
                rest.push(waiting.boxed());
                for (j, record) in never_handed.iter().enumerate() {
                    match self.send(topic, record, None).await {
                        Send::Handed(delivery) => {
                            let i = unsent[j];
                            rest.push(delivery.map(move |r| (i, r)).into_stream().boxed());
                        }
                        Send::Refused(err) => refused.push((unsent[j], err)),
                        Send::QueueStillFull => unreachable!("no deadline"),
                    }
                }
                let in_doubt = in_doubt
                    .into_iter()
                    .map(|(i, d)| (i, Err(Failure::InDoubt(d))));
                let mut rest = rest.chain(futures::stream::iter(in_doubt));
                while let Some((i, result)) = rest.next().await {
                    if let Err(failure) = result {
                        refused.push((i, failure.to_string()));
                    }
                }
                refused.sort_unstable();
                return Ok(Delivered {
                    spooled: 0,
                    refused,
                });
            }
        };
        let remap = position.clone();
        let in_flight = InFlight {
            waiting: waiting.map(move |(i, r)| (remap[&i], r)).boxed(),
            unsent: unsent.iter().map(|i| position[i]).collect(),
            in_doubt: in_doubt.iter().map(|(i, d)| (position[i], *d)).collect(),
        };
        self.in_flight
            .lock()
            .expect("in flight")
            .insert(seq, in_flight);
        *spooling = true;
        drop(spooling);
        self.wake.notify_one();
        Ok(Delivered { spooled, refused })
    }

    /// Delivers spooled batches, oldest first, until `stop`.
    pub async fn drain(&self, stop: CancellationToken) {
        loop {
            let next = self.spool.lock().expect("spool").first_pending();
            let Some(seq) = next else {
                {
                    let mut spooling = self.spooling.lock().await;
                    if *spooling && self.spool.lock().expect("spool").first_pending().is_none() {
                        tracing::info!("the spool is empty: producing directly again");
                        *spooling = false;
                    }
                }
                tokio::select! {
                    () = self.wake.notified() => continue,
                    () = stop.cancelled() => return,
                }
            };
            tokio::select! {
                result = self.deliver_spooled(seq) => {
                    if let Err(err) = result {
                        tracing::error!(error = %format!("{err:#}"), seq, "the spool cannot be read or marked; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    }

    /// Sends one spooled batch (or waits for its records already in the producer) and marks it
    /// delivered.
    async fn deliver_spooled(&self, seq: u64) -> Result<(), SpoolError> {
        let spool = self.spool.clone();
        let batch = tokio::task::spawn_blocking(move || spool.lock().expect("spool").read(seq))
            .await
            .expect("spool read does not panic")?;
        // A request registers its records in flight before it lets go of this lock.
        let in_flight = {
            let _appends = self.spooling.lock().await;
            self.in_flight.lock().expect("in flight").remove(&seq)
        };
        let mut waiting: SelectAll<BoxStream<'static, Outcome>> = SelectAll::new();
        let (mut to_send, mut in_doubt) = match in_flight {
            Some(in_flight) => {
                waiting.push(in_flight.waiting);
                (in_flight.unsent, in_flight.in_doubt)
            }
            None => ((0..batch.records.len()).collect(), Vec::new()),
        };
        loop {
            for &j in &to_send {
                match self.send(&batch.topic, &batch.records[j], None).await {
                    Send::Handed(delivery) => {
                        waiting.push(delivery.map(move |r| (j, r)).into_stream().boxed());
                    }
                    Send::Refused(err) => {
                        tracing::warn!(seq, topic = %batch.topic, error = %err, "Kafka refused a spooled record; it stays in the spool");
                        waiting
                            .push(futures::stream::iter([(j, Err(Failure::Refused(err)))]).boxed());
                    }
                    Send::QueueStillFull => unreachable!("no deadline"),
                }
            }
            let mut failed = Vec::new();
            while let Some((j, result)) = waiting.next().await {
                match result {
                    Ok(()) => {}
                    Err(Failure::InDoubt(d)) => in_doubt.push((j, d)),
                    Err(Failure::Refused(err)) => {
                        tracing::warn!(seq, topic = %batch.topic, error = %err, "Kafka refused a spooled record; sending it again");
                        failed.push(j);
                    }
                }
            }
            if !in_doubt.is_empty() {
                let not_landed = self
                    .not_landed(&batch.topic, std::mem::take(&mut in_doubt))
                    .await;
                failed.extend(not_landed);
                failed.sort_unstable();
            }
            if failed.is_empty() {
                break;
            }
            tracing::info!(seq, records = failed.len(), "sending spooled records again");
            tokio::time::sleep(RETRY_PAUSE).await;
            to_send = failed;
        }
        let spool = self.spool.clone();
        let (pending, bytes) = tokio::task::spawn_blocking(move || {
            let mut spool = spool.lock().expect("spool");
            spool.delivered(seq)?;
            Ok::<_, SpoolError>((spool.pending(), spool.bytes()))
        })
        .await
        .expect("spool mark does not panic")?;
        self.metrics.emit(SpoolHolds { pending, bytes });
        self.spool_full.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The batch positions of those of `in_doubt` (records sent to `topic`) that did not reach
    /// it, found by reading their partitions back; tried again until Kafka answers.
    async fn not_landed(&self, topic: &str, in_doubt: Vec<(usize, InDoubt)>) -> Vec<usize> {
        let records: Vec<InDoubt> = in_doubt.iter().map(|(_, d)| *d).collect();
        loop {
            let (client, topic_owned, run) = (
                self.client.clone(),
                topic.to_string(),
                self.ids.run().to_string(),
            );
            let records = records.clone();
            let found =
                tokio::task::spawn_blocking(move || landed(&client, &topic_owned, &run, &records))
                    .await
                    .expect("the search does not panic");
            match found {
                Ok(found) => {
                    let not_found: Vec<usize> = in_doubt
                        .iter()
                        .filter(|(_, d)| !found.contains(&d.counter))
                        .map(|(j, _)| *j)
                        .collect();
                    self.metrics.emit(InDoubtSettled {
                        topic,
                        landed: in_doubt.len() - not_found.len(),
                        resent: not_found.len(),
                    });
                    return not_found;
                }
                Err(err) => {
                    tracing::info!(topic, error = %err, records = in_doubt.len(), "records in doubt cannot be looked for yet");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<u64, SpoolError> {
        let spool = self.spool.clone();
        let topic = topic.to_string();
        let appended = tokio::task::spawn_blocking(move || {
            let mut spool = spool.lock().expect("spool");
            let seq = spool.append(&topic, &records)?;
            Ok::<_, SpoolError>((seq, spool.pending(), spool.bytes()))
        })
        .await
        .expect("spool append does not panic");
        self.spool_full.store(
            matches!(appended, Err(SpoolError::Full { .. })),
            Ordering::Relaxed,
        );
        let (seq, pending, bytes) = appended?;
        self.metrics.emit(SpoolHolds { pending, bytes });
        Ok(seq)
    }

    /// Hands a record to the producer, with a fresh [`RECORD_ID_HEADER`], waiting while its
    /// queue is full (until `deadline`).
    async fn send(&self, topic: &str, record: &Record, deadline: Option<Instant>) -> Send {
        loop {
            let sent = self.ids.assign(|counter, id| {
                let mut message: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                    .payload(record.value.as_slice())
                    .headers(OwnedHeaders::new().insert(Header {
                        key: RECORD_ID_HEADER,
                        value: Some(id),
                    }));
                if let Some(key) = &record.key {
                    message = message.key(key);
                }
                let producer = self.producer.read().expect("producer");
                producer
                    .send_result(message)
                    .map(|delivery| (counter, delivery))
                    .map_err(|(err, _)| err)
            });
            match sent {
                Ok((counter, delivery)) => {
                    return Send::Handed(
                        async move {
                            match delivery.await {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((
                                    rdkafka::error::KafkaError::MessageProduction(
                                        RDKafkaErrorCode::PurgeQueue
                                        | RDKafkaErrorCode::PurgeInflight,
                                    ),
                                    message,
                                ))) => Err(Failure::InDoubt(InDoubt {
                                    partition: (message.partition() >= 0)
                                        .then_some(message.partition()),
                                    counter,
                                })),
                                Ok(Err((err, _))) => Err(Failure::Refused(err.to_string())),
                                // The producer went without a word on it.
                                Err(_) => Err(Failure::InDoubt(InDoubt {
                                    partition: None,
                                    counter,
                                })),
                            }
                        }
                        .boxed(),
                    );
                }
                Err(rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Send::QueueStillFull;
                    }
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err(err) => return Send::Refused(err.to_string()),
            }
        }
    }

    /// Waits up to `limit` for the spool to empty and the producer to flush, for a clean stop.
    pub async fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.spool.lock().expect("spool").pending() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let producer = self.producer();
        let _ = tokio::task::spawn_blocking(move || producer.flush(left)).await;
    }
}

enum Send {
    Handed(futures::future::BoxFuture<'static, Result<(), Failure>>),
    QueueStillFull,
    Refused(String),
}

/// An idempotent acks=all producer with no local message timeout.
fn new_producer(client: &ClientOptions) -> Result<FutureProducer<BasicContext>, KafkaError> {
    client.create(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "2"),
        // Never give up on a record locally: once handed over it is retried until Kafka takes
        // it (or the producer is replaced), so it is never in Kafka and in a retry at once.
        ("message.timeout.ms", "0"),
        ("queue.buffering.max.messages", "200000"),
        ("queue.buffering.max.kbytes", "131072"),
        ("reconnect.backoff.max.ms", "1000"),
    ])
}
