//! `sluice load`: one stream's job over NDJSON files, with no broker — the engine alone.
//!
//! The files are read in the order given as one sequence of lines, each line a record whose
//! "offset" is its position in that sequence (from 0), so windows see every event of the
//! input and may group by anything. Lines go through the stream's decoder in batches, into
//! the stream's tables and windows as `sluice stream` does, with two differences: a table's
//! rows are written to its files as they come and the files committed later (nothing can
//! revoke a file's lines, so no rows are held between commits), and at the end of the input
//! every window closes (the input is complete). Progress is committed as for a Kafka
//! partition, under the source name `file:<name>,<name>…`: loading the same files again lands
//! nothing twice. Alerts, late events and dead letters go to `<side dir>/<topic>.ndjson`
//! (rewritten each run), or are only counted.

mod lines;
mod side_files;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use sluice_core::config::{FlushPolicy, Pipeline, Stream, StreamFormat, defaults};
use sluice_core::{DecodedBatch, Decoder};
use sluice_lake::PartitionProgress;
use tracing::info;

use crate::events::{Metrics, RecordsRead, Summary};

use crate::job::Job;
use crate::lanes::{Lane, Pending};
use crate::operators::Batch;
use crate::output::{Held, Landed, Output, newest_timestamp_us, window_marks_of};
use crate::side::{Original, SideOutputs, WindowsHere};
use crate::windows::{LaneWatermark, WindowLane};
use lines::{Ahead, Decoded, Lines};
use side_files::SideFiles;

/// What `sluice load` runs.
pub struct LoadOptions {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// The stream whose job runs; may be left out when the pipeline has one.
    pub stream: Option<String>,
    /// NDJSON files, read in this order.
    pub files: Vec<PathBuf>,
    /// Storage options for the lake.
    pub storage_options: std::collections::HashMap<String, String>,
    /// Where alerts, late events and dead letters are written, one file per topic.
    pub side_dir: Option<PathBuf>,
}

/// Rows of a table being written (and maybe committed) on another worker while the next lines
/// are decoded: the table comes back with its files, and the last line the commit covers when
/// it committed.
type InFlight = tokio::task::JoinHandle<(Landing, Result<Option<i64>>)>;

/// A table, which holds the files written to it since its last commit (`Sink::write`): a
/// load holds no rows between commits, only open files.
struct Landing {
    output: Output,
    /// The newest event time written since the last commit.
    newest_event_us: Option<i64>,
    /// Rows written since the last commit.
    rows_written: usize,
}

/// A table and the writing of its rows on another worker.
struct TableWriter {
    /// `None` while its rows are being written.
    landing: Option<Landing>,
    in_flight: Option<InFlight>,
    /// The table's flush policy (also while its rows are being written).
    flush: FlushPolicy,
}

/// Runs the load.
pub async fn run(options: LoadOptions) -> Result<Summary> {
    let stream = pick_stream(&options.pipeline, options.stream.as_deref())?;
    let source = source_name(&options.files)?;
    if !matches!(stream.format, StreamFormat::Json) {
        anyhow::bail!(
            "stream {}: `sluice load` reads JSON lines, and this stream's records are {:?}",
            stream.name,
            stream.format.name()
        );
    }
    let decoder = Decoder::new(stream.schema.clone(), stream.max_record_size);
    let mut job = Job::new(SideOutputs::of(&options.pipeline, stream, WindowsHere::All));
    let mut tables = Vec::new();
    for config in options
        .pipeline
        .tables
        .iter()
        .filter(|t| t.from == stream.name)
    {
        let schema = decoder.table_schema();
        let event_time = &stream.schema.event_time().name;
        let output = Output::table(config, &options.storage_options, schema, event_time).await?;
        tables.push(TableWriter {
            landing: Some(Landing {
                output,
                newest_event_us: None,
                rows_written: 0,
            }),
            in_flight: None,
            flush: config.flush,
        });
        job.add_table(config);
    }
    let mut windows = Vec::new();
    for config in options
        .pipeline
        .windows
        .iter()
        .filter(|w| w.from == stream.name)
    {
        windows.push(Output::window(config, &options.storage_options).await?);
        job.add_window(config);
    }
    let key = (source.clone(), 0);
    let mut committed = Vec::new();
    for output in &tables {
        let landing = output.landing.as_ref().expect("not writing yet");
        committed.push(
            landing
                .output
                .sink
                .lock()
                .await
                .committed(&source, 0)
                .await?,
        );
    }
    let mut resumes = Vec::new();
    let mut window_lanes = Vec::new();
    for output in &windows {
        let config = output.window_config().expect("a window table");
        let marks = window_marks_of(&**output.sink.lock().await, &key).await?;
        resumes.push(WindowLane::resume_offset(&marks));
        window_lanes.push(WindowLane::new(
            marks,
            config.allowed_lateness_us,
            &config.aggregation,
        ));
    }
    let mut lane = Lane::resuming(&committed, &resumes);
    lane.windows = window_lanes;
    let start = lane.next_offset();
    info!(source = %source, from_line = start, "Loading.");

    let mut side_files = SideFiles::new(options.side_dir.as_deref())?;
    let mut ahead = Ahead::start(
        Lines::open(options.files)?,
        decoder,
        source.clone(),
        start,
        defaults::DECODE_BATCH_RECORDS,
    );
    let mut load = Load {
        source,
        tables,
        windows,
        lane,
        job,
        metrics: Metrics::shared(),
    };
    while let Some(Decoded { read, rows }) = ahead.next().await? {
        let lines = read.lines.lines();
        load.metrics.emit(RecordsRead {
            topic: &load.source,
            records: lines.len(),
            bytes: lines.iter().map(|line| line.len()).sum(),
            already_landed: read.skip,
        });
        if let Some(rows) = rows {
            let first = read.first + read.skip as i64;
            load.batch(&lines[read.skip..], first, rows, &mut side_files)
                .await?;
        }
        load.flush(false).await?;
        drop(lines);
        ahead.recycle(read.lines);
    }
    for (slot, output) in load.windows.iter().enumerate() {
        let config = output.window_config().expect("a window table");
        load.lane.windows[slot]
            .finish(&config.aggregation)
            .await
            .with_context(|| format!("emitting windows of {}", config.name))?;
    }
    load.flush(true).await?;
    side_files.finish()?;
    Ok(load.metrics.summary())
}

/// The stream named, or the pipeline's only one.
fn pick_stream<'a>(pipeline: &'a Pipeline, name: Option<&str>) -> Result<&'a Stream> {
    match name {
        Some(name) => pipeline.stream(name).with_context(|| {
            let names: Vec<&str> = pipeline.streams.iter().map(|s| s.name.as_str()).collect();
            format!("--stream {name}: the pipeline has no such stream (it has {names:?})")
        }),
        None => match pipeline.streams.as_slice() {
            [only] => Ok(only),
            streams => {
                let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
                anyhow::bail!(
                    "the pipeline has {} streams {names:?}: pick one with --stream",
                    names.len()
                )
            }
        },
    }
}

/// `file:<name>,<name>…`: the progress name of a load of these files. ':' appears in no Kafka
/// topic name, so it cannot be mistaken for a topic's progress.
fn source_name(files: &[PathBuf]) -> Result<String> {
    anyhow::ensure!(!files.is_empty(), "no input files");
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| format!("{} is not a file name", f.display()))
        })
        .collect::<Result<_>>()?;
    Ok(format!("file:{}", names.join(",")))
}

struct Load {
    source: String,
    tables: Vec<TableWriter>,
    /// Window tables: their results are few, so they are committed as any stream commits.
    windows: Vec<Output>,
    lane: Lane,
    job: Job,
    metrics: Arc<Metrics>,
}

impl Load {
    /// Lands `decoded`, the rows of lines numbered from `first`, in the tables and windows,
    /// and their side records in `side_files`.
    async fn batch(
        &mut self,
        lines: &[&[u8]],
        first: i64,
        decoded: DecodedBatch,
        side_files: &mut SideFiles,
    ) -> Result<()> {
        let last_offset = first + lines.len() as i64 - 1;
        let now = Instant::now();
        let original = |offset: i64| {
            let line = lines.get(usize::try_from(offset - first).ok()?)?;
            Some(Original {
                key: None,
                payload: Some(line),
                headers: Vec::new(),
                timestamp: None,
            })
        };
        let batch = Batch {
            topic: &self.source,
            partition: 0,
            decoded: &decoded,
            origins: None,
            last_offset,
            now,
            original: &original,
        };
        let out = self.job.process(&batch, &mut self.lane, &self.metrics)?;
        side_files.write(&out.side.records)?;
        // The one lane holds every event: each window closes as its own watermark moves.
        for (slot, output) in self.windows.iter().enumerate() {
            let config = output.window_config().expect("a window table");
            let window = &mut self.lane.windows[slot];
            if let LaneWatermark::At(watermark) = window.watermark(now) {
                window
                    .advance(&config.aggregation, watermark)
                    .await
                    .with_context(|| format!("emitting windows of {}", config.name))?;
            }
        }
        Ok(())
    }

    /// Waits for the rows of table `slot` being written, if any, and takes its table back.
    async fn settle(&mut self, slot: usize) -> Result<()> {
        let Some(in_flight) = self.tables[slot].in_flight.take() else {
            return Ok(());
        };
        let (landing, landed) = in_flight
            .await
            .context("writing rows to a table failed to run")?;
        self.tables[slot].landing = Some(landing);
        if let Some(last) = landed? {
            self.lane.tables[slot].committed = Some(last);
        }
        Ok(())
    }

    /// Writes each table's new rows to its files, and commits every table (and window table)
    /// that is due under its flush policy ([`Held::due`]; with `all`, everything pending, and
    /// waits for it). A table's rows
    /// are written on another worker while decoding goes on; its next rows wait for them, so
    /// each table writes and commits in order.
    async fn flush(&mut self, all: bool) -> Result<()> {
        for slot in 0..self.tables.len() {
            let rows = self.lane.tables[slot].take_rows();
            let due = Held::of_table(&self.lane.tables[slot]).due(&self.tables[slot].flush, all);
            if rows.is_empty() && !due {
                continue;
            }
            self.settle(slot).await?;
            // After `settle`: a commit it took back may have covered all that was pending.
            let pending = due.then(|| self.lane.tables[slot].take_pending()).flatten();
            if rows.is_empty() && pending.is_none() {
                continue;
            }
            let mut landing = self.tables[slot].landing.take().expect("settled above");
            let (source, metrics) = (self.source.clone(), self.metrics.clone());
            self.tables[slot].in_flight = Some(tokio::spawn(async move {
                let landed = land(&mut landing, &source, rows, pending, &metrics).await;
                (landing, landed)
            }));
        }
        if all {
            for slot in 0..self.tables.len() {
                self.settle(slot).await?;
            }
        }
        for slot in 0..self.windows.len() {
            let output = &mut self.windows[slot];
            let window = &mut self.lane.windows[slot];
            if !Held::of_window(window).due(&output.flush, all) {
                continue;
            }
            if let Some(pending) = window.take_pending() {
                let landed = Landed {
                    to_line: Some(pending.last_offset),
                    ..Landed::batches(output, &pending.batches, None)
                };
                commit(output, &self.source, landed, &pending, &self.metrics).await?;
                window.committed = Some(pending.last_offset);
            }
        }
        Ok(())
    }
}

/// Writes `rows` to the table's files and, with `pending`, commits the files; returns the last
/// line the commit covers, if it committed.
async fn land(
    landing: &mut Landing,
    source: &str,
    rows: Vec<RecordBatch>,
    pending: Option<Pending>,
    metrics: &Metrics,
) -> Result<Option<i64>> {
    let Landing {
        output,
        newest_event_us,
        rows_written,
    } = landing;
    *newest_event_us = (*newest_event_us).max(newest_timestamp_us(&rows, &output.event_time));
    let mut sink = output.sink.lock().await;
    for batch in rows {
        sink.write(&batch)
            .await
            .with_context(|| format!("writing rows to table {}", output.name()))?;
        *rows_written += batch.num_rows();
    }
    drop(sink);
    let Some(pending) = pending else {
        return Ok(None);
    };
    let landed = Landed {
        rows: std::mem::take(rows_written),
        newest_event_us: newest_event_us.take(),
        newest_by_partition: Vec::new(),
        to_line: Some(pending.last_offset),
        received: None,
    };
    commit(output, source, landed, &pending, metrics).await?;
    Ok(Some(pending.last_offset))
}

/// Commits `pending`'s rows (besides the files written ahead) with its progress.
async fn commit(
    output: &mut Output,
    source: &str,
    landed: Landed,
    pending: &Pending,
    metrics: &Metrics,
) -> Result<()> {
    let progress = PartitionProgress {
        topic: source.to_string(),
        partition: 0,
        previous: pending.previous,
        last_offset: pending.last_offset,
        marks: pending.marks.clone(),
    };
    let rows = landed.rows;
    output
        .commit(&pending.batches, &[progress], landed, metrics)
        .await
        .with_context(|| {
            format!(
                "committing {rows} rows to table {} (nothing of them is committed: run the load \
                 again, it resumes from the table's last commit)",
                output.name()
            )
        })?;
    Ok(())
}
