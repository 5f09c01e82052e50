//! `sluice verify`: what landed, compared with what Kafka holds and what the producer reported.
//!
//! Per table and source partition: the offset the lake records as committed, the rows and
//! distinct offsets in the table (duplicates = rows − distinct; missing = offsets in
//! [log start or first row, committed] not in the table), the broker's log range, and the
//! producer report's counts when given. Records in the stream's dead-letter topic count as
//! landed (not missing), and one dead-lettered twice is a problem. A table with a `filter`
//! is checked for duplicates and progress only: offsets without rows are expected there. Every file the table references must exist and have a
//! readable Parquet footer. Clean means no problem at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_core::Pipeline;
use sluice_core::config::Catalog;
use sluice_kafka::ClientOptions;
use sluice_kafka::{admin, side};
use sluice_lake::audit::BadFile;
use sluice_query::{Format, Lake, TableLocation};

use crate::produce::ProducerReport;

mod audit;

use audit::Audit;

/// What to verify.
pub struct VerifyOptions {
    /// The pipeline whose tables to check.
    pub pipeline: Pipeline,
    /// The cluster holding the source topics.
    pub client: ClientOptions,
    /// Storage options of the lake.
    pub storage_options: HashMap<String, String>,
    /// A producer report to compare with.
    pub report: Option<ProducerReport>,
    /// Unreferenced files younger than this are left alone (a commit may be in flight).
    pub min_age: std::time::Duration,
    /// Remove unreferenced files older than `min_age`.
    pub repair: bool,
}

/// The outcome for the whole pipeline.
#[derive(Debug, Serialize)]
pub struct Verification {
    /// No problem anywhere.
    pub clean: bool,
    /// Per table.
    pub tables: Vec<TableVerification>,
}

/// The outcome for one table.
#[derive(Debug, Serialize)]
pub struct TableVerification {
    /// Table name.
    pub table: String,
    /// Its location.
    pub uri: String,
    /// Its Delta version.
    pub version: Option<u64>,
    /// Files the current version references.
    pub files: usize,
    /// Referenced files that are missing or unreadable.
    pub bad_files: Vec<BadFile>,
    /// Data files no version references (never committed), older than the minimum age; removed
    /// when repairing. Readers never see them, so they are not a problem.
    pub uncommitted_files: Vec<String>,
    /// Whether `uncommitted_files` were removed.
    pub repaired: bool,
    /// Per source partition.
    pub partitions: Vec<PartitionVerification>,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
}

/// The outcome for one source partition of a table.
#[derive(Debug, Serialize)]
pub struct PartitionVerification {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The last offset the lake records as committed.
    pub committed: Option<i64>,
    /// First offset in the broker's log.
    pub log_start: i64,
    /// Offset the broker gives the next record.
    pub log_end: i64,
    /// Rows from this partition.
    pub rows: i64,
    /// Distinct offsets among them.
    pub distinct_offsets: i64,
    /// Lowest offset in the table.
    pub min_offset: Option<i64>,
    /// Highest offset in the table.
    pub max_offset: Option<i64>,
    /// Rows beyond the first for some offset.
    pub duplicates: i64,
    /// Distinct offsets in the stream's dead-letter topic.
    pub dead_lettered: i64,
    /// Offsets in the committed range that have no row.
    pub missing: i64,
    /// Records in the log not yet committed to the table.
    pub lag: i64,
}

/// Offset statistics of one source partition in a table.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
struct OffsetStats {
    n: i64,
    d: i64,
    lo: Option<i64>,
    hi: Option<i64>,
}

/// How many times a table's log and rows are read again when a commit landed between them.
const SAME_VERSION_ATTEMPTS: usize = 10;

/// Checks every table of the pipeline.
pub async fn run(options: &VerifyOptions) -> Result<Verification> {
    let mut tables = Vec::new();
    for table in &options.pipeline.tables {
        let stream = options
            .pipeline
            .stream(&table.from)
            .expect("validated: tables name streams");
        let source = Source {
            topic: &stream.topic,
            dead_letter_topic: stream.dead_letter_topic.as_deref(),
            filtered: table.filter.is_some(),
        };
        let at = TableAt {
            name: &table.name,
            uri: &table.uri,
            catalog: table.catalog.as_ref(),
        };
        tables.push(verify_table(options, at, source).await?);
    }
    let clean = tables.iter().all(|t| t.problems.is_empty());
    Ok(Verification { clean, tables })
}

/// The topic a table is written from, and where its undecodable records went.
struct Source<'a> {
    topic: &'a str,
    dead_letter_topic: Option<&'a str>,
    /// The table keeps only rows matching a filter: offsets without rows are expected.
    filtered: bool,
}

/// Which table: its name, location and (Iceberg) catalog.
#[derive(Clone, Copy)]
struct TableAt<'a> {
    name: &'a str,
    uri: &'a str,
    catalog: Option<&'a Catalog>,
}

async fn verify_table(
    options: &VerifyOptions,
    table: TableAt<'_>,
    source: Source<'_>,
) -> Result<TableVerification> {
    let name = table.name;
    let topic = source.topic;
    // The log and the rows are read at one version: a writer may commit in between, and is
    // then waited out by reading both again.
    let mut attempts = 0;
    let (audited, files, bad_files, stats) = loop {
        attempts += 1;
        let audited = Audit::open(name, table.uri, table.catalog, &options.storage_options).await?;
        let (files, bad_files) = audited.check_files().await?;
        // Row statistics need every file readable; with a damaged file, only the log is checked.
        if !bad_files.is_empty() {
            break (audited, files, bad_files, None);
        }
        let (stats, version) = offset_stats(table, &options.storage_options).await?;
        if version == audited.version() || attempts == SAME_VERSION_ATTEMPTS {
            break (audited, files, bad_files, Some(stats));
        }
    };
    let uncommitted_files = audited
        .uncommitted_files(options.min_age, options.repair)
        .await?;
    let client = options.client.clone();
    let owned_topic = topic.to_string();
    let dead_letter_topic = source.dead_letter_topic.map(String::from);
    let (log, ends, dead_letters) = tokio::task::spawn_blocking(move || {
        let log = admin::describe_topic(&client, &owned_topic, None)?;
        let partitions: Vec<(String, i32)> = log
            .partitions
            .iter()
            .map(|p| (owned_topic.clone(), p.id))
            .collect();
        let ends = admin::log_ranges(&client, &partitions)?;
        let dead_letters = match &dead_letter_topic {
            Some(dlq) => side::source_offsets(&client, dlq, &owned_topic)?,
            None => HashMap::new(),
        };
        Ok::<_, sluice_kafka::KafkaError>((log, ends, dead_letters))
    })
    .await??;
    let produced = options
        .report
        .as_ref()
        .filter(|report| report.topic == topic);
    let mut problems: Vec<String> = bad_files
        .iter()
        .map(|b| format!("file {} is unreadable: {}", b.path, b.error))
        .collect();
    if stats.is_none() {
        problems.push("row checks skipped: the table references unreadable files".into());
    }
    let mut partitions = Vec::new();
    for p in &log.partitions {
        let log_end = ends[&(topic.to_string(), p.id)].end;
        let committed = audited.committed_offset(topic, p.id).await?;
        let rows_checked = stats.is_some();
        let s = stats
            .as_ref()
            .and_then(|stats| stats.get(&(topic.to_string(), p.id)).copied())
            .unwrap_or_default();
        let sent = dead_letters.get(&p.id).map_or(&[][..], Vec::as_slice);
        let dead: BTreeSet<i64> = sent.iter().copied().collect();
        let start = s.lo.map_or(p.low, |lo| lo.min(p.low));
        let dead_in_range = committed.map_or(0, |c| dead.range(start..=c).count() as i64);
        let missing = match rows_checked && !source.filtered {
            true => committed.map_or(0, |c| (c - start + 1).max(0) - s.d - dead_in_range),
            false => 0,
        };
        let at = format!("{topic}/{}", p.id);
        if s.n > s.d {
            problems.push(format!("{at}: {} duplicate row(s)", s.n - s.d));
        }
        if sent.len() > dead.len() {
            problems.push(format!(
                "{at}: {} record(s) sent to the dead-letter topic more than once",
                sent.len() - dead.len()
            ));
        }
        if missing > 0 {
            problems.push(format!(
                "{at}: {missing} offset(s) between {start} and the committed {} have no row",
                committed.unwrap_or(-1)
            ));
        }
        match committed {
            None if s.n > 0 => {
                problems.push(format!("{at}: {} row(s) but no committed offset", s.n))
            }
            Some(c) if s.hi.is_some_and(|hi| hi > c) => problems.push(format!(
                "{at}: rows up to offset {} beyond the committed {c}",
                s.hi.unwrap_or_default()
            )),
            Some(c) if c >= log_end => problems.push(format!(
                "{at}: committed offset {c} is beyond the log end {log_end} (topic recreated?)"
            )),
            _ => {}
        }
        if let Some(report) = produced.filter(|_| rows_checked && !source.filtered) {
            let expected = report.partitions.get(&p.id);
            let (records, first, last) = expected.map_or((0, None, None), |e| {
                (e.records as i64, Some(e.first_offset), Some(e.last_offset))
            });
            let landed = s.d + dead.len() as i64;
            let lo = s.lo.into_iter().chain(dead.first().copied()).min();
            let hi = s.hi.into_iter().chain(dead.last().copied()).max();
            if landed != records
                || lo.filter(|_| records > 0) != first
                || hi.filter(|_| records > 0) != last
            {
                problems.push(format!(
                    "{at}: the producer report has {records} record(s) at offsets {first:?}..={last:?}, the table and dead-letter topic {landed} distinct offset(s) at {lo:?}..={hi:?}"
                ));
            }
        }
        let lag = log_end - committed.map_or(p.low, |c| c + 1);
        partitions.push(PartitionVerification {
            topic: topic.to_string(),
            partition: p.id,
            committed,
            log_start: p.low,
            log_end,
            rows: s.n,
            distinct_offsets: s.d,
            min_offset: s.lo,
            max_offset: s.hi,
            duplicates: s.n - s.d,
            dead_lettered: dead.len() as i64,
            missing: missing.max(0),
            lag,
        });
    }
    for (topic, partition) in stats
        .iter()
        .flatten()
        .map(|(key, _)| key)
        .filter(|(t, p)| t != topic || !log.partitions.iter().any(|l| l.id == *p))
    {
        problems.push(format!(
            "{topic}/{partition}: rows from a partition the source topic does not have"
        ));
    }
    Ok(TableVerification {
        table: name.into(),
        uri: audited.uri(),
        version: audited.version(),
        files,
        bad_files,
        uncommitted_files,
        repaired: options.repair,
        partitions,
        problems,
    })
}

/// Rows, distinct offsets and offset range per source (topic, partition), by SQL over the table;
/// and the version they were read at.
async fn offset_stats(
    TableAt { name, uri, catalog }: TableAt<'_>,
    storage_options: &HashMap<String, String>,
) -> Result<(BTreeMap<(String, i32), OffsetStats>, Option<u64>)> {
    let lake = Lake::open(
        &[TableLocation {
            name: name.into(),
            uri: uri.into(),
            catalog: catalog.cloned(),
        }],
        storage_options,
    )
    .await?;
    let batches = lake
        .sql(&format!(
            "select _topic as topic, _partition as partition, count(*) as n, count(distinct _offset) as d, \
             min(_offset) as lo, max(_offset) as hi from {name} group by _topic, _partition"
        ))
        .await?;
    let mut stats = BTreeMap::new();
    for line in sluice_query::render(&batches, Format::Json)?.lines() {
        #[derive(serde::Deserialize)]
        struct Row {
            topic: String,
            partition: i32,
            #[serde(flatten)]
            stats: OffsetStats,
        }
        let row: Row = serde_json::from_str(line).context("reading offset statistics")?;
        stats.insert((row.topic, row.partition), row.stats);
    }
    Ok((stats, lake.tables().first().map(|t| t.version)))
}

/// The human summary of a verification.
pub fn summary(verification: &Verification) -> String {
    let mut out = String::new();
    for t in &verification.tables {
        let bad = if t.bad_files.is_empty() {
            "all footers readable".to_string()
        } else {
            format!("{} unreadable", t.bad_files.len())
        };
        out.push_str(&format!(
            "table {} ({}, version {:?}, {} files, {bad})\n",
            t.table, t.uri, t.version, t.files
        ));
        out.push_str(&format!(
            "  {:<28} {:>10} {:>21} {:>10} {:>6} {:>6} {:>8} {:>8}\n",
            "topic/partition", "committed", "log range", "rows", "dups", "dlq", "missing", "lag"
        ));
        for p in &t.partitions {
            out.push_str(&format!(
                "  {:<28} {:>10} {:>21} {:>10} {:>6} {:>6} {:>8} {:>8}\n",
                format!("{}/{}", p.topic, p.partition),
                p.committed.map_or("-".into(), |c| c.to_string()),
                format!("{}..{}", p.log_start, p.log_end),
                p.rows,
                p.duplicates,
                p.dead_lettered,
                p.missing,
                p.lag
            ));
        }
        if !t.uncommitted_files.is_empty() {
            let done = if t.repaired {
                "removed"
            } else {
                "left in place (never visible to readers; --repair removes them)"
            };
            out.push_str(&format!(
                "  {} uncommitted file(s) {done}\n",
                t.uncommitted_files.len()
            ));
        }
        for problem in &t.problems {
            out.push_str(&format!("  problem: {problem}\n"));
        }
    }
    let problems: usize = verification.tables.iter().map(|t| t.problems.len()).sum();
    out.push_str(&if verification.clean {
        "verify: clean\n".to_string()
    } else {
        format!("verify: {problems} problem(s)\n")
    });
    out
}
