//! Opening what a stream process writes and reads: its tables and window tables (before it
//! joins the group, so that a bad lake fails fast), the side-output producer, and each
//! partition's lane from the lake's offsets, window marks and side-topic tails.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sluice_core::Decoder;
use sluice_kafka::admin;
use sluice_kafka::side::{
    SideMark, SideProducer, last_marks, last_marks_per_side_partition, partition_count,
};
use sluice_kafka::{ClientOptions, KafkaError};
use tracing::{info, warn};

use super::{Output, Source, StreamOptions, WindowOutput};
use crate::events::{LaneOpened, Metrics};
use crate::job::Job;
use crate::lake::{open_table, open_window_table, window_marks_of};
use crate::lanes::{Lane, TableBuffer};
use crate::repartition::Forward;
use crate::side::{SideOutputs, WindowsHere};
use crate::windows::WindowLane;

/// How long reading the side topics' tails may keep failing before the stream gives up (and
/// exits non-zero, to be restarted). Below librdkafka's max.poll.interval.ms (5 min), so
/// waiting does not cost the group membership.
const SIDE_TAILS_RETRY_LIMIT: Duration = Duration::from_secs(120);

/// Opens (or creates) every table before joining the group, so a bad lake fails fast.
pub(super) async fn open_outputs(
    options: &StreamOptions,
) -> Result<(Vec<Output>, Vec<WindowOutput>, BTreeMap<String, Source>)> {
    let mut outputs = Vec::new();
    let mut windows = Vec::new();
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    for stream in &options.pipeline.streams {
        let decoder = Decoder::new(stream.schema.clone(), stream.max_record_size);
        let source = sources.entry(stream.topic.clone()).or_insert(Source {
            decoder,
            outputs: Vec::new(),
            windows: Vec::new(),
            job: Job::new(SideOutputs::of(
                &options.pipeline,
                stream,
                WindowsHere::NotRepartitioned,
            )),
            forwards: Vec::new(),
            reads_origins: false,
        });
        for config in options
            .pipeline
            .tables
            .iter()
            .filter(|t| t.from == stream.name)
        {
            let table = open_table(
                config,
                &options.storage_options,
                source.decoder.table_schema(),
            )
            .await?;
            info!(table = %config.name, at = %table.describe(), "Opened table.");
            source.outputs.push(outputs.len());
            outputs.push(Output {
                table,
                config: config.clone(),
                topic: stream.topic.clone(),
                slot: source.job.add_table(config),
                event_time: stream.schema.event_time().name.clone(),
            });
        }
    }
    for config in &options.pipeline.windows {
        let stream = options
            .pipeline
            .stream(&config.from)
            .expect("validated: windows name streams");
        let table = open_window_table(config, &options.storage_options).await?;
        info!(window = %config.name, at = %table.describe(), "Opened window table.");
        let stream_source = sources
            .get_mut(&stream.topic)
            .expect("every stream has a source");
        let Some(internal) = &config.repartition_topic else {
            stream_source.windows.push(windows.len());
            windows.push(WindowOutput {
                table,
                config: config.clone(),
                topic: stream.topic.clone(),
                slot: stream_source.job.add_window(config),
                fed_by: None,
            });
            continue;
        };
        stream_source.forwards.push(Forward {
            window: windows.len(),
            topic: internal.clone(),
            key_columns: config.group_by.clone(),
        });
        let forward_slot = stream_source.forwards.len() - 1;
        let partitions = ensure_repartition_topic(&options.client, &stream.topic, internal).await?;
        info!(window = %config.name, topic = %internal, partitions, "Repartitioning through an internal topic keyed by the window's group_by.");
        let mut repartitioned = Job::new(SideOutputs::of_repartitioned(stream, config));
        let slot = repartitioned.add_window(config);
        sources.insert(
            internal.clone(),
            Source {
                decoder: Decoder::new(stream.schema.clone(), stream.max_record_size),
                outputs: Vec::new(),
                windows: vec![windows.len()],
                job: repartitioned,
                forwards: Vec::new(),
                reads_origins: true,
            },
        );
        windows.push(WindowOutput {
            table,
            config: config.clone(),
            topic: internal.clone(),
            slot,
            fed_by: Some((stream.topic.clone(), forward_slot, partitions)),
        });
    }
    Ok((outputs, windows, sources))
}

/// Creates `internal` with as many partitions as `topic` unless it exists; returns `topic`'s
/// partition count.
async fn ensure_repartition_topic(
    client: &ClientOptions,
    topic: &str,
    internal: &str,
) -> Result<i32> {
    let (owned, source) = (client.clone(), topic.to_string());
    let partitions =
        tokio::task::spawn_blocking(move || partition_count(&owned, &source)).await??;
    admin::create_topic(client, internal, partitions, 1)
        .await
        .with_context(|| format!("creating the repartition topic {internal}"))?;
    Ok(partitions)
}

/// A producer for the dead-letter, alert and repartition topics, if the pipeline has any;
/// fails fast on a missing topic.
pub(super) async fn connect_side_producer(
    client: &ClientOptions,
    sources: &BTreeMap<String, Source>,
) -> Result<Option<SideProducer>> {
    let mut topics: Vec<String> = sources
        .values()
        .flat_map(|s| {
            let forwards = s.forwards.iter().map(|f| f.topic.as_str());
            s.job.side().topics().into_iter().chain(forwards)
        })
        .map(String::from)
        .collect();
    topics.sort_unstable();
    topics.dedup();
    if topics.is_empty() {
        return Ok(None);
    }
    let client = client.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        SideProducer::connect(&client, &topics)
    })
    .await??;
    Ok(Some(producer))
}

/// The lane of a partition, created from the lake's committed offsets on first use.
pub(super) async fn lane_for<'a>(
    lanes: &'a mut HashMap<(String, i32), Lane>,
    (outputs, windows): (&[Output], &[WindowOutput]),
    sources: &BTreeMap<String, Source>,
    (client, prefetched): (&ClientOptions, &mut PrefetchedMarks),
    key: (String, i32),
    metrics: &Metrics,
) -> Result<&'a mut Lane> {
    if !lanes.contains_key(&key) {
        let source = &sources[&key.0];
        let committed = committed_offsets(outputs, sources, &key).await?;
        let now = Instant::now();
        let mut resumes = Vec::new();
        let mut window_lanes = Vec::new();
        for &window in &source.windows {
            let output = &windows[window];
            let marks = window_marks_of(output.table.as_ref(), &key).await?;
            resumes.push(WindowLane::resume_offset(&marks));
            let lane = WindowLane::new(marks, output.config.allowed_lateness_us);
            window_lanes.push(match output.fed_by {
                Some((_, _, partitions)) => {
                    lane.fed_by_partitions(partitions, output.config.idle_timeout, now)
                }
                None => lane,
            });
        }
        let mut forwards = Vec::new();
        for forward in &source.forwards {
            let table = &windows[forward.window].table;
            let forwarded = table.committed(&key.0, key.1).await?;
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
    for forward in &sources[topic].forwards {
        let internal = forward.topic.as_str();
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
    outputs: &[Output],
    sources: &BTreeMap<String, Source>,
    (topic, partition): &(String, i32),
) -> Result<Vec<Option<i64>>> {
    let mut committed = Vec::new();
    for &output in &sources[topic].outputs {
        committed.push(outputs[output].table.committed(topic, *partition).await?);
    }
    Ok(committed)
}
