//! `[[tables]]`: the tables a stream's rows land in, and what `[[tables]]` and `[[windows]]`
//! entries share: how a table is stored (format, compression, catalog), its partition columns
//! and its flush limits.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::file::{FlushSection, TableSection};
use super::{
    Catalog, FlushPolicy, Problems, Stream, Table, TableFormat, catalogs, check_stream_named,
    check_unique, defaults, entry_path, is_identifier, parse_duration, parse_size, table_format,
};
use crate::expressions::Predicate;

pub(super) fn validate_table(
    index: usize,
    raw: &TableSection,
    (streams, stream_names): (&[Stream], &HashSet<&str>),
    catalogs: &BTreeMap<String, Catalog>,
    problems: &mut Problems,
) -> Option<Table> {
    let at = entry_path("tables", index, &raw.name);
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
    check_stream_named(&at, &raw.from, stream_names, problems);
    let columns = (streams.iter().find(|s| s.name == raw.from)).map(|s| s.schema.table_schema());
    let filter = match (&raw.filter, &columns) {
        (Some(sql), Some(columns)) => Predicate::compile(sql, columns)
            .map_err(|err| problems.add(format!("{at}.filter"), err))
            .ok(),
        _ => None,
    };
    let (format, catalog) = storage(
        &at,
        TableStorage {
            format: raw.format.as_deref(),
            compression: raw.compression.as_deref(),
            catalog: raw.catalog.as_deref(),
        },
        columns.as_deref(),
        catalogs,
        problems,
    );
    if raw.uri.trim().is_empty() {
        problems.add(
            format!("{at}.uri"),
            "expected s3://bucket/path, file:///path or a local path",
        );
    }
    let partition_by = partition_columns(&at, raw.partition_by.as_deref(), problems);
    let flush = flush_policy(&at, &raw.flush, problems);
    (problems.0.len() == before).then(|| Table {
        name: raw.name.clone(),
        from: raw.from.clone(),
        uri: raw.uri.clone(),
        partition_by,
        flush,
        filter,
        format,
        catalog,
    })
}

/// What a `[[tables]]` or `[[windows]]` entry says about how its rows are stored.
pub(crate) struct TableStorage<'a> {
    pub format: Option<&'a str>,
    pub compression: Option<&'a str>,
    pub catalog: Option<&'a str>,
}

/// The format of the table at `at` (checked against its `columns`, when known) and, for an
/// Iceberg table, the catalog it is registered in.
pub(crate) fn storage(
    at: &str,
    raw: TableStorage<'_>,
    columns: Option<&arrow::datatypes::Schema>,
    catalogs: &BTreeMap<String, Catalog>,
    problems: &mut Problems,
) -> (TableFormat, Option<Catalog>) {
    let format =
        table_format::parse_table_format(at, raw.format, raw.compression, columns, problems);
    let catalog = catalogs::table_catalog(at, format, raw.catalog, catalogs, problems);
    (format, catalog)
}

/// The partition columns of a table (date and hour by default), checked.
pub(crate) fn partition_columns(
    at: &str,
    raw: Option<&[String]>,
    problems: &mut Problems,
) -> Vec<String> {
    let partition_by = raw
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| defaults::PARTITION_BY.map(String::from).to_vec());
    for (i, column) in partition_by.iter().enumerate() {
        if !defaults::PARTITION_BY.contains(&column.as_str()) {
            problems.add(
                format!("{at}.partition_by[{i}]"),
                format!("expected \"date\" or \"hour\", got {column:?}"),
            );
        }
    }
    check_unique(
        &format!("{at}.partition_by"),
        partition_by.iter().map(String::as_str),
        problems,
    );
    partition_by
}

pub(crate) fn flush_policy(at: &str, raw: &FlushSection, problems: &mut Problems) -> FlushPolicy {
    let defaults = FlushPolicy::default();
    let mut limit =
        |field: &str, parsed: Option<Result<u64, String>>, default: u64, unit: &str| match parsed {
            None => default,
            Some(Ok(0)) => {
                problems.add(
                    format!("{at}.flush.{field}"),
                    format!("expected {unit} above 0"),
                );
                default
            }
            Some(Ok(value)) => value,
            Some(Err(err)) => {
                problems.add(format!("{at}.flush.{field}"), err);
                default
            }
        };
    let max_rows = limit(
        "max_rows",
        raw.max_rows.map(|rows| Ok(rows as u64)),
        defaults.max_rows as u64,
        "a row count",
    );
    let max_bytes = limit(
        "max_bytes",
        raw.max_bytes.as_deref().map(parse_size),
        defaults.max_bytes,
        "a size",
    );
    let max_latency_ms = limit(
        "max_latency",
        raw.max_latency
            .as_deref()
            .map(|text| parse_duration(text).map(|d| d.as_millis() as u64)),
        defaults.max_latency.as_millis() as u64,
        "a duration",
    );
    FlushPolicy {
        max_rows: max_rows as usize,
        max_bytes,
        max_latency: Duration::from_millis(max_latency_ms),
    }
}
