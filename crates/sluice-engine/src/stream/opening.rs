//! Opening what a stream process writes and reads: its tables and window tables (before it
//! joins the group, so that a bad lake fails fast), the side-output producer, and each
//! partition's lane from the lake's offsets, window marks and side-topic tails.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sluice_core::Decoder;
use sluice_core::config::Stream;
use sluice_kafka::admin;
use sluice_kafka::side::{
    OnAcknowledged, SideMark, SideProducer, last_marks, last_marks_per_side_partition,
    partition_count,
};
use sluice_kafka::{ClientOptions, KafkaError};
use tracing::{info, warn};

use super::{FedBy, Routed, Source, StreamOptions};
use crate::events::{LaneOpened, Metrics, SideAcknowledged};
use crate::job::Job;
use crate::lanes::{Lane, TableBuffer};
use crate::output::{Lands, Output, window_marks_of};
use crate::registry::SchemaRegistry;
use crate::side::{SideOutputs, WindowsHere};
use crate::windows::WindowLane;

/// How long reading the side topics' tails may keep failing before the stream gives up (and
/// exits non-zero, to be restarted). Below librdkafka's max.poll.interval.ms (5 min), so
/// waiting does not cost the group membership.
const SIDE_TAILS_RETRY_LIMIT: Duration = Duration::from_secs(120);

/// Opens (or creates) every table before joining the group, so a bad lake fails fast; returns
/// them (tables first, then window tables) and the topics to read.
pub(super) async fn open_outputs(
    options: &StreamOptions,
) -> Result<(Vec<Routed>, BTreeMap<String, Source>)> {
    let mut outputs = Vec::new();
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    for stream in &options.pipeline.streams {
        let side = SideOutputs::of(&options.pipeline, stream, WindowsHere::NotRepartitioned);
        let source = sources.entry(stream.topic.clone()).or_insert(Source {
            decoder: Decoder::of_stream(stream),
            registry: registry_of(stream)?,
            job: Job::new(side),
            reads_origins: false,
        });
        for config in options
            .pipeline
            .tables
            .iter()
            .filter(|t| t.from == stream.name)
        {
            let schema = source.decoder.table_schema();
            let event_time = &stream.schema.event_time().name;
            let output =
                Output::table(config, &options.storage_options, schema, event_time).await?;
            let at = output.describe().await;
            info!(table = %config.name, %at, "Opened table.");
            outputs.push(Routed {
                output,
                topic: stream.topic.clone(),
                slot: source.job.add_table(config),
                fed_by: None,
                in_flight: None,
            });
        }
    }
    for config in &options.pipeline.windows {
        let stream = options
            .pipeline
            .stream(&config.from)
            .expect("validated: windows name streams");
        let output = Output::window(config, &options.storage_options).await?;
        let at = output.describe().await;
        info!(window = %config.name, %at, "Opened window table.");
        let stream_source = sources
            .get_mut(&stream.topic)
            .expect("every stream has a source");
        let Some(internal) = &config.repartition_topic else {
            outputs.push(Routed {
                output,
                topic: stream.topic.clone(),
                slot: stream_source.job.add_window(config),
                fed_by: None,
                in_flight: None,
            });
            continue;
        };
        let (partitions, internal_partitions) =
            ensure_repartition_topic(&options.client, &stream.topic, internal).await?;
        info!(window = %config.name, topic = %internal, partitions = internal_partitions, "Repartitioning through an internal topic keyed by the window's group_by.");
        let forward = stream_source
            .job
            .add_forward(config, internal, internal_partitions);
        let mut repartitioned = Job::new(SideOutputs::of_repartitioned(stream, config));
        let slot = repartitioned.add_window(config);
        // Forwards carry the stream's records as they were: the same decoder reads them.
        let (decoder, registry) = (
            stream_source.decoder.clone(),
            stream_source.registry.clone(),
        );
        sources.insert(
            internal.clone(),
            Source {
                decoder,
                registry,
                job: repartitioned,
                reads_origins: true,
            },
        );
        outputs.push(Routed {
            output,
            topic: internal.clone(),
            slot,
            fed_by: Some(FedBy {
                topic: stream.topic.clone(),
                forward,
                partitions,
            }),
            in_flight: None,
        });
    }
    Ok((outputs, sources))
}

/// The Schema Registry a stream's records name their writer schemas in, if any.
fn registry_of(stream: &Stream) -> Result<Option<SchemaRegistry>> {
    stream
        .format
        .registry()
        .map(|registry| SchemaRegistry::new(registry, &stream.format))
        .transpose()
}

/// Creates `internal` with as many partitions as `topic` unless it exists; returns the
/// partition counts of `topic` and of `internal`.
async fn ensure_repartition_topic(
    client: &ClientOptions,
    topic: &str,
    internal: &str,
) -> Result<(i32, i32)> {
    let count = |topic: &str| {
        let (client, topic) = (client.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || partition_count(&client, &topic))
    };
    let partitions = count(topic).await??;
    admin::create_topic(client, internal, partitions, 1)
        .await
        .with_context(|| format!("creating the repartition topic {internal}"))?;
    let internal_partitions = count(internal)
        .await?
        .with_context(|| format!("reading the partitions of {internal}"))?;
    Ok((partitions, internal_partitions))
}

/// A producer for the dead-letter, alert and repartition topics, if the pipeline has any,
/// timing acknowledgements into `metrics`; fails fast on a missing topic.
pub(super) async fn connect_side_producer(
    client: &ClientOptions,
    sources: &BTreeMap<String, Source>,
    metrics: &Arc<Metrics>,
) -> Result<Option<SideProducer>> {
    let mut topics: Vec<String> = sources
        .values()
        .flat_map(|s| {
            s.job
                .side()
                .topics()
                .into_iter()
                .chain(s.job.forward_topics())
        })
        .map(String::from)
        .collect();
    topics.sort_unstable();
    topics.dedup();
    if topics.is_empty() {
        return Ok(None);
    }
    let client = client.clone();
    let metrics = metrics.clone();
    let acknowledged: OnAcknowledged =
        Box::new(move |kind, after| metrics.emit(SideAcknowledged { kind, after }));
    let producer = tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        SideProducer::connect(&client, &topics, Some(acknowledged))
    })
    .await??;
    Ok(Some(producer))
}

/// The lane of a partition, created from the lake's committed offsets on first use.
pub(super) async fn lane_for<'a>(
    lanes: &'a mut HashMap<(String, i32), Lane>,
    outputs: &[Routed],
    sources: &BTreeMap<String, Source>,
    (client, prefetched): (&ClientOptions, &mut PrefetchedMarks),
    key: (String, i32),
    metrics: &Metrics,
) -> Result<&'a mut Lane> {
    if !lanes.contains_key(&key) {
        let committed = committed_offsets(outputs, &key).await?;
        let now = Instant::now();
        let mut resumes = Vec::new();
        let mut window_lanes = Vec::new();
        for routed in outputs.iter().filter(|r| r.topic == key.0) {
            let Some(config) = routed.output.window_config() else {
                continue;
            };
            let marks = window_marks_of(&**routed.output.sink.lock().await, &key).await?;
            resumes.push(WindowLane::resume_offset(&marks));
            let lane = WindowLane::new(marks, config.allowed_lateness_us, &config.aggregation);
            window_lanes.push(match &routed.fed_by {
                Some(fed) => lane.fed_by_partitions(fed.partitions, config.idle_timeout, now),
                None => lane,
            });
        }
        let mut forwards = Vec::new();
        for routed in forwarded_from(outputs, &key.0) {
            let forwarded = routed
                .output
                .sink
                .lock()
                .await
                .committed(&key.0, key.1)
                .await?;
            resumes.push(forwarded.map(|c| c + 1));
            forwards.push(TableBuffer::new(forwarded));
        }
        let mut lane = Lane::resuming(&committed, &resumes);
        lane.windows = window_lanes;
        lane.forwards = forwards;
        let marks = match prefetched.remove(&key) {
            Some(marks) => marks,
            None => side_marks(client, sources, &key.0, &[key.1])
                .await?
                .remove(&key)
                .unwrap_or_default(),
        };
        lane.side_marks = marks.side;
        lane.forwarded = marks.forwarded;
        metrics.emit(LaneOpened {
            topic: &key.0,
            partition: key.1,
            next: lane.next_offset(),
            committed: &committed,
            side: &lane.side_marks,
        });
        lanes.insert(key.clone(), lane);
    }
    Ok(lanes.get_mut(&key).expect("inserted above"))
}

/// The repartitioned windows whose events `topic`'s lanes forward, in forward slot order.
pub(super) fn forwarded_from<'a>(
    outputs: &'a [Routed],
    topic: &'a str,
) -> impl Iterator<Item = &'a Routed> + 'a {
    outputs
        .iter()
        .filter(move |r| r.fed_by.as_ref().is_some_and(|fed| fed.topic == topic))
}

/// What side topics hold from one partition.
#[derive(Debug, Default)]
pub(super) struct LaneMarks {
    /// Per side topic (dead letters, alerts, late events), the last record sent.
    side: HashMap<String, SideMark>,
    /// Per repartition topic and partition, the last record forwarded.
    forwarded: HashMap<(String, i32), SideMark>,
}

/// Per partition, what the side topics hold from it, read at assignment for all the
/// partitions assigned at once, taken by each lane as it opens.
pub(super) type PrefetchedMarks = HashMap<(String, i32), LaneMarks>;

/// What each side and repartition topic of `topic`'s stream holds from each of `partitions`.
/// A read that fails for a while (the broker restarting, slow to answer) is tried again with
/// backoff for up to [`SIDE_TAILS_RETRY_LIMIT`], saying what it waits for: without these marks
/// a lane cannot open without sending side records twice.
pub(super) async fn side_marks(
    client: &ClientOptions,
    sources: &BTreeMap<String, Source>,
    topic: &str,
    partitions: &[i32],
) -> Result<PrefetchedMarks> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match tokio::task::block_in_place(|| read_side_marks(client, sources, topic, partitions)) {
            Err(err)
                if err
                    .downcast_ref::<KafkaError>()
                    .is_some_and(KafkaError::is_transient)
                    && started.elapsed() < SIDE_TAILS_RETRY_LIMIT =>
            {
                warn!(topic, ?partitions, error = %format!("{err:#}"), retry_in = ?delay, "Waiting to read what the side topics hold from these partitions before their lanes open.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            other => return other,
        }
    }
}

/// One attempt of [`side_marks`].
fn read_side_marks(
    client: &ClientOptions,
    sources: &BTreeMap<String, Source>,
    topic: &str,
    partitions: &[i32],
) -> Result<PrefetchedMarks> {
    let mut marks: PrefetchedMarks = partitions
        .iter()
        .map(|p| ((topic.to_string(), *p), LaneMarks::default()))
        .collect();
    for side_topic in sources[topic].job.side().topics() {
        let found = last_marks(client, side_topic, topic, partitions)
            .with_context(|| format!("reading what {side_topic} holds from {topic}"))?;
        for (partition, mark) in found {
            if let Some(lane) = marks.get_mut(&(topic.to_string(), partition)) {
                lane.side.insert(side_topic.to_string(), mark);
            }
        }
    }
    for internal in sources[topic].job.forward_topics() {
        let found = last_marks_per_side_partition(client, internal, topic, partitions)
            .with_context(|| format!("reading what {internal} holds from {topic}"))?;
        for (partition, per_side_partition) in found {
            if let Some(lane) = marks.get_mut(&(topic.to_string(), partition)) {
                lane.forwarded.extend(
                    per_side_partition
                        .into_iter()
                        .map(|(q, mark)| ((internal.to_string(), q), mark)),
                );
            }
        }
    }
    Ok(marks)
}

/// Partitions grouped by topic.
pub(super) fn by_topic(partitions: &[(String, i32)]) -> BTreeMap<&str, Vec<i32>> {
    let mut grouped: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        grouped.entry(topic.as_str()).or_default().push(*partition);
    }
    grouped
}

/// What each table fed by a partition's topic holds of it, in the stream's table order.
pub(super) async fn committed_offsets(
    outputs: &[Routed],
    (topic, partition): &(String, i32),
) -> Result<Vec<Option<i64>>> {
    let mut committed = Vec::new();
    for routed in outputs.iter().filter(|r| r.topic == *topic) {
        if let Lands::Rows = routed.output.lands {
            committed.push(
                routed
                    .output
                    .sink
                    .lock()
                    .await
                    .committed(topic, *partition)
                    .await?,
            );
        }
    }
    Ok(committed)
}
