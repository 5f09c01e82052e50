//! `[[windows]]`: event-time window aggregations of a stream, each written to a table of its
//! own (Delta by default; Iceberg or plain files as `[[tables]]` can be).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::{
    Catalog, FlushPolicy, Problems, Stream, TableFormat, TableStorage, check_stream_named,
    check_unique, entry_path, flush_policy, is_identifier, parse_duration, partition_columns,
    storage,
};
use crate::config::file::WindowSection;
use crate::windows::{WindowAggregation, WindowKind};

/// How long a partition may be silent before it stops holding back the stream's watermark.
const IDLE_TIMEOUT: &str = "1m";

/// A validated window aggregation.
#[derive(Debug, Clone)]
pub struct Window {
    /// The window table's name in SQL.
    pub name: String,
    /// The stream it aggregates.
    pub from: String,
    /// Key columns.
    pub group_by: Vec<String>,
    /// Events later than this behind the newest event time are late, in microseconds.
    pub allowed_lateness_us: i64,
    /// When a silent partition stops holding back the watermark.
    pub idle_timeout: Duration,
    /// The compiled aggregation (window kind included).
    pub aggregation: WindowAggregation,
    /// Where the window table lives.
    pub uri: String,
    /// Partition columns of the window table (of the window start).
    pub partition_by: Vec<String>,
    /// What the window table is stored as.
    pub format: TableFormat,
    /// The catalog an Iceberg window table is registered in.
    pub catalog: Option<Catalog>,
    /// When emitted windows are written out.
    pub flush: FlushPolicy,
    /// Where late events go, if anywhere.
    pub late_topic: Option<String>,
    /// The internal topic the stream's events go through, keyed by `group_by`, when that is
    /// not the stream's key: `<group>-<window>-repartition`.
    pub repartition_topic: Option<String>,
}

impl Window {
    /// The window kind.
    pub fn kind(&self) -> WindowKind {
        self.aggregation.kind()
    }
}

pub(super) fn validate(
    raw: &[WindowSection],
    streams: (&[Stream], &HashSet<&str>),
    group_and_catalogs: (&str, &BTreeMap<String, Catalog>),
    problems: &mut Problems,
) -> Vec<Window> {
    raw.iter()
        .enumerate()
        .filter_map(|(index, window)| {
            validate_one(index, window, streams, group_and_catalogs, problems)
        })
        .collect()
}

fn validate_one(
    index: usize,
    raw: &WindowSection,
    (streams, stream_names): (&[Stream], &HashSet<&str>),
    (group, catalogs): (&str, &BTreeMap<String, Catalog>),
    problems: &mut Problems,
) -> Option<Window> {
    let at = entry_path("windows", index, &raw.name);
    let before = problems.0.len();
    if !is_identifier(&raw.name) {
        problems.add(
            format!("{at}.name"),
            format!(
                "expected an SQL name of letters, digits and _, got {:?}",
                raw.name
            ),
        );
    }
    if raw.uri.trim().is_empty() {
        problems.add(
            format!("{at}.uri"),
            "expected s3://bucket/path, file:///path or a local path",
        );
    }
    let mut duration = |field: &str, text: Option<&str>, default: &str| {
        parse_duration(text.unwrap_or(default))
            .map_err(|err| problems.add(format!("{at}.{field}"), err))
            .ok()
            .map(|d| d.as_micros() as i64)
    };
    let allowed_lateness_us = duration("allowed_lateness", raw.allowed_lateness.as_deref(), "0s");
    let idle_timeout_us = duration("idle_timeout", raw.idle_timeout.as_deref(), IDLE_TIMEOUT);
    let kind = window_kind(&at, raw, problems);
    let partition_by = partition_columns(&at, raw.partition_by.as_deref(), problems);
    let flush = flush_policy(&at, &raw.flush, problems);
    check_unique(
        &format!("{at}.group_by"),
        raw.group_by.iter().map(String::as_str),
        problems,
    );
    let mut aggregates = Vec::new();
    for (name, expr) in &raw.aggregates {
        match expr.as_str() {
            Some(expr) if is_identifier(name) => aggregates.push((name.clone(), expr.to_string())),
            Some(_) => problems.add(
                format!("{at}.aggregates.{name}"),
                "expected a column name of letters, digits and _",
            ),
            None => problems.add(
                format!("{at}.aggregates.{name}"),
                "expected an SQL aggregate as text, such as \"avg(temperature_c)\"",
            ),
        }
    }
    if raw.aggregates.is_empty() {
        problems.add(
            format!("{at}.aggregates"),
            "expected at least one aggregate, such as { n = \"count(*)\" }",
        );
    }
    check_stream_named(&at, &raw.from, stream_names, problems);
    // A stream that failed its own validation is reported there.
    let stream = streams.iter().find(|s| s.name == raw.from)?;
    for (i, key) in raw.group_by.iter().enumerate() {
        if stream.schema.table_schema().column_with_name(key).is_none() {
            problems.add(
                format!("{at}.group_by[{i}]"),
                format!("{key:?} is not among the stream's columns"),
            );
        }
    }
    if let Some(topic) = &raw.late_topic
        && (topic.trim().is_empty() || *topic == stream.topic)
    {
        problems.add(
            format!("{at}.late_topic"),
            "expected a Kafka topic other than the stream's own",
        );
    }
    // Events of one key share a partition only when the topic is keyed by exactly that key.
    let repartition = raw.group_by.len() != 1 || stream.key.as_ref() != Some(&raw.group_by[0]);
    if repartition && raw.session.is_some() {
        problems.add(
            format!("{at}.group_by"),
            format!(
                "a session window must group by the stream's key ({}): repartitioned sessions are not built",
                stream.key.as_deref().unwrap_or("the stream has none")
            ),
        );
    }
    if problems.0.len() > before {
        return None;
    }
    let aggregation = WindowAggregation::compile(
        kind?,
        &stream.schema.table_schema(),
        &stream.schema.event_time().name,
        &raw.group_by,
        &aggregates,
    )
    .map_err(|err| problems.add(format!("{at}.aggregates"), err))
    .ok()?;
    let (format, catalog) = storage(
        &at,
        TableStorage {
            format: raw.format.as_deref(),
            compression: raw.compression.as_deref(),
            catalog: raw.catalog.as_deref(),
        },
        Some(aggregation.output_schema()),
        catalogs,
        problems,
    );
    if problems.0.len() > before {
        return None;
    }
    Some(Window {
        name: raw.name.clone(),
        from: raw.from.clone(),
        group_by: raw.group_by.clone(),
        allowed_lateness_us: allowed_lateness_us?,
        idle_timeout: Duration::from_micros(idle_timeout_us? as u64),
        aggregation,
        uri: raw.uri.clone(),
        partition_by,
        format,
        catalog,
        flush,
        late_topic: raw.late_topic.clone(),
        repartition_topic: repartition.then(|| format!("{group}-{}-repartition", raw.name)),
    })
}

fn window_kind(at: &str, raw: &WindowSection, problems: &mut Problems) -> Option<WindowKind> {
    let mut positive = |field: &str, text: &str| match parse_duration(text) {
        Ok(d) if !d.is_zero() => Some(d.as_micros() as i64),
        Ok(_) => {
            problems.add(format!("{at}.{field}"), "expected a duration above 0");
            None
        }
        Err(err) => {
            problems.add(format!("{at}.{field}"), err);
            None
        }
    };
    match (&raw.tumble, &raw.hop, &raw.session) {
        (Some(size), None, None) => Some(WindowKind::Tumble {
            size_us: positive("tumble", size)?,
        }),
        (None, None, Some(gap)) => Some(WindowKind::Session {
            gap_us: positive("session", gap)?,
        }),
        (None, Some(hop), None) => {
            let size_us = positive("hop.size", &hop.size)?;
            let slide_us = positive("hop.slide", &hop.slide)?;
            if size_us % slide_us != 0 {
                problems.add(
                    format!("{at}.hop.slide"),
                    format!("expected a slide that divides the size ({})", hop.size),
                );
                return None;
            }
            Some(WindowKind::Hop { size_us, slide_us })
        }
        _ => {
            problems.add(
                format!("{at}.tumble"),
                "expected one of `tumble = \"1m\"`, `hop = { size = \"5m\", slide = \"1m\" }` \
                 or `session = \"30s\"`",
            );
            None
        }
    }
}
