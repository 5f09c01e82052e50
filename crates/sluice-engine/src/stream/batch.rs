//! Reading one batch: rebalances applied (revoked lanes dropped), then per partition the
//! records admitted in offset order (on the loop), then the partitions processed side by side
//! on every core ([`on_every_core`]; each partition on one thread, so in offset order, with
//! its own lane): decoded into Arrow once, fed to the windows (which find the late events),
//! their side records handed to the producer (dead letters, alerts, late copies, forwards to
//! repartition topics) and the rows appended to each table's buffer. The stream's
//! [`Job`](crate::job::Job) does all but the reading and the sending.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use sluice_core::config::defaults;
use sluice_core::{Decoder, RawRecord};
use sluice_kafka::consumer::{Consumed, RebalanceEvent};
use sluice_kafka::side::{
    ORDINAL, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, SideProducer, SideRecord,
};
use tracing::info;

use crate::events::{Metrics, PartitionsAssigned, PartitionsRevoked, RecordsRead, SideSent};
use crate::operators::Batch;

use super::cores::on_every_core;
use super::opening::{by_topic, lane_for, side_marks};
use super::{Source, State, refresh_tables};
use crate::lanes::{Admit, Lane};
use crate::registry::{SchemaRegistry, learn_writer_schemas};
use crate::repartition::origin_partition;
use crate::side::Original;

impl State {
    /// The decoders of the sources whose records name writer schemas, with their registry.
    /// (Taken out of the sources before their lookups wait: a source's job is not `Sync`.)
    fn registries(&self) -> Vec<(String, Decoder, SchemaRegistry)> {
        self.sources
            .iter()
            .filter_map(|(topic, source)| {
                let registry = source.registry.clone()?;
                Some((topic.clone(), source.decoder.clone(), registry))
            })
            .collect()
    }

    /// Reads one batch and buffers its rows; returns how many records arrived.
    pub(super) async fn process_batch(&mut self, wait: Duration) -> Result<usize> {
        let messages = self
            .consumer
            .recv_batch(defaults::DECODE_BATCH_RECORDS, wait)
            .await?;
        // The records' receipt: what the latency metrics count from.
        let now = Instant::now();
        for event in self.consumer.take_events() {
            match event {
                RebalanceEvent::Assigned(partitions) => {
                    self.assigned
                        .extend(partitions.iter().map(|p| (p.clone(), now)));
                    self.metrics.emit(PartitionsAssigned {
                        partitions: &partitions,
                        holding: self.assigned.len(),
                    });
                    for (topic, partitions) in by_topic(&partitions) {
                        let marks =
                            side_marks(&self.client, &self.sources, topic, &partitions).await?;
                        self.prefetched_marks.extend(marks);
                    }
                    // The previous owner may have committed since the tables were last read:
                    // lanes must start from the lake as it is now.
                    refresh_tables(&mut self.outputs, None).await?;
                }
                RebalanceEvent::Revoked(partitions) => {
                    let mut lanes = 0;
                    for partition in &partitions {
                        self.assigned.remove(partition);
                        lanes += usize::from(self.lanes.remove(partition).is_some());
                        self.prefetched_marks.remove(partition);
                    }
                    self.metrics.emit(PartitionsRevoked {
                        partitions: &partitions,
                        holding: self.assigned.len(),
                        lanes,
                    });
                }
            }
        }
        let mut by_partition: BTreeMap<(&str, i32), Vec<&Consumed<'_>>> = BTreeMap::new();
        for message in &messages {
            by_partition
                .entry((message.topic(), message.partition()))
                .or_default()
                .push(message);
        }
        by_partition.retain(|(topic, partition), _| {
            self.assigned.contains_key(&(topic.to_string(), *partition))
        });
        // Before any lane is admitted to: a registry that does not answer makes the batch
        // wait here (or ends the run), never refuses its records.
        for (topic, decoder, registry) in self.registries() {
            let mut payloads: Vec<&[u8]> = Vec::new();
            for ((of, _), records) in &by_partition {
                if *of == topic {
                    payloads.extend(records.iter().filter_map(|r| r.payload()));
                }
            }
            learn_writer_schemas(&topic, &decoder, &registry, payloads, &self.metrics).await?;
        }
        // Every lane is opened before any is admitted to: admission moves a lane's next
        // offset, and nothing may wait (or fail) between that and processing what it took.
        for &(topic, partition) in by_partition.keys() {
            lane_for(
                &mut self.lanes,
                &self.outputs,
                &self.sources,
                (&self.client, &mut self.prefetched_marks),
                (topic.to_string(), partition),
                &self.metrics,
            )
            .await?;
        }
        let mut admitted = Vec::with_capacity(by_partition.len());
        for ((topic, partition), records) in by_partition {
            let lane = (self.lanes.get_mut(&(topic.to_string(), partition))).expect("opened above");
            self.metrics.emit(RecordsRead {
                topic,
                records: records.len(),
                bytes: records
                    .iter()
                    .map(|r| r.payload().map_or(0, <[u8]>::len))
                    .sum(),
                already_landed: 0,
            });
            lane.begin_batch();
            let mut taken = Vec::with_capacity(records.len());
            for message in &records {
                let offset = message.offset();
                match lane.admit(offset) {
                    Admit::Take => taken.push(RawRecord {
                        payload: message.payload(),
                        partition,
                        offset,
                    }),
                    Admit::Skip => {}
                    Admit::SeekTo(next) => {
                        info!(
                            topic,
                            partition,
                            from = offset,
                            to = next,
                            "Seeking back to the lake's position."
                        );
                        tokio::task::block_in_place(|| {
                            self.consumer.seek(topic, partition, Some(next))
                        })?;
                    }
                }
            }
            if !taken.is_empty() {
                admitted.push(Admitted {
                    topic,
                    partition,
                    records,
                    taken,
                });
            }
        }
        // Each partition's admitted records, with its lane, for as many threads as there are
        // cores: lanes are independent, and each stays on one thread, in offset order.
        let mut lanes: HashMap<(&str, i32), &mut Lane> = (self.lanes.iter_mut())
            .map(|((topic, partition), lane)| ((topic.as_str(), *partition), lane))
            .collect();
        let work: Vec<(Admitted<'_, '_>, &mut Lane)> = admitted
            .into_iter()
            .map(|a| {
                let lane = lanes.remove(&(a.topic, a.partition)).expect("admitted");
                (a, lane)
            })
            .collect();
        if work.is_empty() {
            return Ok(messages.len());
        }
        let shared = Shared {
            sources: &self.sources,
            producer: self.side_producer.as_ref(),
            metrics: &self.metrics,
            now,
            ingested_at_us: chrono::Utc::now().timestamp_micros(),
        };
        tokio::task::block_in_place(|| {
            on_every_core(
                work,
                |(admitted, _)| admitted.taken.len(),
                PARALLEL_FROM_RECORDS,
                |(admitted, lane)| shared.process(&admitted, lane),
            )
        })?;
        Ok(messages.len())
    }
}

/// The fewest admitted records a thread is given: a batch with fewer than twice this many is
/// processed on the loop's thread alone, where starting threads would cost more than it saves.
const PARALLEL_FROM_RECORDS: usize = 512;

/// One partition's records in a batch, and those of them its lane admitted.
struct Admitted<'m, 'c> {
    topic: &'m str,
    partition: i32,
    records: Vec<&'m Consumed<'c>>,
    taken: Vec<RawRecord<'m>>,
}

/// What processing any partition's records needs, shared by the threads.
struct Shared<'s> {
    sources: &'s BTreeMap<String, Source>,
    producer: Option<&'s SideProducer>,
    metrics: &'s Metrics,
    /// The batch's receipt.
    now: Instant,
    ingested_at_us: i64,
}

impl Shared<'_> {
    /// Decodes one partition's admitted records into Arrow, runs its stream's job over them
    /// with its lane, and hands the side records and forwards they give to the producer.
    fn process(&self, admitted: &Admitted<'_, '_>, lane: &mut Lane) -> Result<()> {
        let Admitted {
            topic,
            partition,
            records,
            taken,
        } = admitted;
        let last_offset = taken.last().expect("some taken").offset;
        let source = &self.sources[*topic];
        let decoded = source.decoder.decode(topic, taken, self.ingested_at_us);
        let origins = source
            .reads_origins
            .then(|| origins_of(records, &decoded.batch))
            .transpose()?;
        let first = records[0].offset();
        let original = |offset: i64| {
            let message = records
                .get(usize::try_from(offset - first).ok()?)
                .filter(|m| m.offset() == offset)
                .or_else(|| records.iter().find(|m| m.offset() == offset))?;
            Some(original_of(message))
        };
        let batch = Batch {
            topic,
            partition: *partition,
            decoded: &decoded,
            origins: origins.as_deref(),
            last_offset,
            now: self.now,
            original: &original,
        };
        let out = source.job.process(&batch, lane, self.metrics)?;
        let sending: Vec<&SideRecord> = out.side.records.iter().chain(&out.forwarded).collect();
        if sending.is_empty() {
            return Ok(());
        }
        let producer = self
            .producer
            .context("side records to send but no side topics")?;
        for record in &sending {
            producer.send(record, Some(self.now))?;
        }
        let after = self.now.elapsed();
        for record in sending {
            self.metrics.emit(SideSent {
                kind: record.kind,
                after,
            });
        }
        for record in &out.side.records {
            lane.side_marks.insert(record.topic.clone(), record.mark);
        }
        Ok(())
    }
}

/// A consumed record as the dead-letter topic keeps it.
fn original_of<'a>(message: &'a Consumed<'_>) -> Original<'a> {
    Original {
        key: message.key(),
        payload: message.payload(),
        headers: message
            .headers()
            .filter(|(key, _)| *key != ORDINAL)
            .map(|(key, value)| (origin_name(key), value.unwrap_or_default()))
            .collect(),
        timestamp: message.timestamp_ms(),
    }
}

/// The name a header of a consumed record keeps in a side copy: a record from a repartition
/// topic names its source in `sluice.source.*`, which the copy needs for its own source, so
/// those become `sluice.origin.*`.
fn origin_name(key: &str) -> &str {
    match key {
        SOURCE_TOPIC => "sluice.origin.topic",
        SOURCE_PARTITION => "sluice.origin.partition",
        SOURCE_OFFSET => "sluice.origin.offset",
        other => other,
    }
}

/// Per row of `decoded`, the source partition its record from a repartition topic names.
fn origins_of(records: &[&Consumed<'_>], decoded: &RecordBatch) -> Result<Vec<i32>> {
    use arrow::array::AsArray;
    let by_offset: HashMap<i64, &Consumed<'_>> = records.iter().map(|m| (m.offset(), *m)).collect();
    let offsets = decoded
        .column_by_name(sluice_core::schema::OFFSET_COLUMN)
        .context("decoded rows carry _offset")?
        .as_primitive::<arrow::datatypes::Int64Type>();
    offsets
        .values()
        .iter()
        .map(|offset| {
            let message = by_offset.get(offset).context("a decoded row's record")?;
            origin_partition(message).with_context(|| {
                format!(
                    "record {}/{}@{offset} of a repartition topic names no source partition",
                    message.topic(),
                    message.partition()
                )
            })
        })
        .collect()
}
