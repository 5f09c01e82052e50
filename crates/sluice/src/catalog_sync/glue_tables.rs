//! What a sluice table looks like as an AWS Glue table, as Athena reads it.
//!
//! - A **Delta** table: `table_type = DELTA` at its location (Athena reads the schema and the
//!   files from the Delta log; the columns are listed for catalogs and engines that show them).
//! - A **plain-files** table: a Hive external table over its `date=…/hour=…` objects, with
//!   **partition projection** on `date` and `hour`, so that Athena prunes by the path without
//!   partitions being added to Glue: `date` a day from the table's first date on, `hour` an
//!   integer 0–23 written unpadded, as sluice's paths are (`hour=9`). Parquet through
//!   `ParquetHiveSerDe`, CSV through `OpenCSVSerde` (RFC 4180 quoting; the header line
//!   skipped), JSON Lines through the OpenX `JsonSerDe`. Text formats list timestamps as
//!   `string` (OpenCSVSerde reads timestamps only as epoch milliseconds); gzip and zstd objects
//!   are read by their extension.

use std::collections::HashMap;

use arrow::datatypes::{Field, Schema};
use aws_sdk_glue::types::{Column, SerDeInfo, StorageDescriptor, TableInput};
use sluice_core::config::{FileFormat, FileKind};
use sluice_core::schema::{DATE_COLUMN, HOUR_COLUMN};
use sluice_iceberg::glue::hive_type;
use sluice_lake::table::{WRITER, WRITER_PROPERTY};

/// A table to register.
pub struct Registered<'a> {
    /// Its name in Glue.
    pub name: &'a str,
    /// Its location, a directory (`s3://bucket/prefix/table/`).
    pub location: &'a str,
    /// Its columns as the table holds them.
    pub schema: &'a Schema,
}

const EXTERNAL: &str = "EXTERNAL_TABLE";
const PARQUET_SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
const PARQUET_INPUT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const PARQUET_OUTPUT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const CSV_SERDE: &str = "org.apache.hadoop.hive.serde2.OpenCSVSerde";
const JSON_SERDE: &str = "org.openx.data.jsonserde.JsonSerDe";
const TEXT_INPUT: &str = "org.apache.hadoop.mapred.TextInputFormat";
const TEXT_OUTPUT: &str = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat";

/// A Delta table as Athena's `CREATE EXTERNAL TABLE … TBLPROPERTIES ('table_type'='DELTA')`
/// registers it, with its columns.
pub fn delta_table(table: &Registered<'_>) -> Result<TableInput, String> {
    let columns = columns(table.schema.fields().iter().map(AsRef::as_ref), false)?;
    let storage = StorageDescriptor::builder()
        .set_columns(Some(columns))
        .location(table.location)
        .input_format(PARQUET_INPUT)
        .output_format(PARQUET_OUTPUT)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(PARQUET_SERDE)
                .parameters("path", table.location)
                .build(),
        )
        .build();
    TableInput::builder()
        .name(table.name)
        .table_type(EXTERNAL)
        .set_parameters(Some(parameters([
            ("table_type", "DELTA"),
            ("EXTERNAL", "TRUE"),
            ("classification", "delta"),
        ])))
        .storage_descriptor(storage)
        .build()
        .map_err(|err| err.to_string())
}

/// A plain-files table as a Hive external table with partition projection on the partition
/// columns it has (`partition_by`), the first date being `first_date` (`yyyy-MM-dd`).
pub fn files_table(
    table: &Registered<'_>,
    format: &FileFormat,
    partition_by: &[String],
    first_date: &str,
) -> Result<TableInput, String> {
    let is_partition = |name: &str| partition_by.iter().any(|p| p == name);
    let text = format.kind != FileKind::Parquet;
    let data_columns = (table.schema.fields().iter())
        .filter(|f| !is_partition(f.name()))
        .map(AsRef::as_ref);
    let (input, output, serde) = match format.kind {
        FileKind::Parquet => (PARQUET_INPUT, PARQUET_OUTPUT, serde(PARQUET_SERDE, &[])),
        FileKind::Csv => (
            TEXT_INPUT,
            TEXT_OUTPUT,
            serde(
                CSV_SERDE,
                &[
                    ("separatorChar", ","),
                    ("quoteChar", "\""),
                    ("escapeChar", "\\"),
                ],
            ),
        ),
        FileKind::Jsonl => (TEXT_INPUT, TEXT_OUTPUT, serde(JSON_SERDE, &[])),
    };
    let storage = StorageDescriptor::builder()
        .set_columns(Some(columns(data_columns, text)?))
        .location(table.location)
        .input_format(input)
        .output_format(output)
        .serde_info(serde)
        .build();
    let mut parameters = parameters([("EXTERNAL", "TRUE"), ("classification", format.kind.name())]);
    if format.kind == FileKind::Csv {
        parameters.insert("skip.header.line.count".into(), "1".into());
    }
    let mut keys = Vec::new();
    let mut template = table.location.trim_end_matches('/').to_string();
    for column in partition_by {
        let (kind, projection): (&str, Vec<(String, String)>) = match column.as_str() {
            DATE_COLUMN => (
                "date",
                vec![
                    ("type".into(), "date".into()),
                    ("format".into(), "yyyy-MM-dd".into()),
                    ("range".into(), format!("{first_date},NOW+1DAYS")),
                    ("interval".into(), "1".into()),
                    ("interval.unit".into(), "DAYS".into()),
                ],
            ),
            HOUR_COLUMN => (
                "int",
                vec![
                    ("type".into(), "integer".into()),
                    ("range".into(), "0,23".into()),
                ],
            ),
            other => return Err(format!("partition column {other} cannot be projected")),
        };
        keys.push(column_named(column, kind)?);
        for (key, value) in projection {
            parameters.insert(format!("projection.{column}.{key}"), value);
        }
        template.push_str(&format!("/{column}=${{{column}}}"));
    }
    if !keys.is_empty() {
        parameters.insert("projection.enabled".into(), "true".into());
        parameters.insert("storage.location.template".into(), template);
    }
    TableInput::builder()
        .name(table.name)
        .table_type(EXTERNAL)
        .set_parameters(Some(parameters))
        .storage_descriptor(storage)
        .set_partition_keys(Some(keys))
        .build()
        .map_err(|err| err.to_string())
}

/// The table parameters sluice sets, with its marker (what `catalog sync` may overwrite).
fn parameters<const N: usize>(pairs: [(&str, &str); N]) -> HashMap<String, String> {
    pairs
        .into_iter()
        .chain([(WRITER_PROPERTY, WRITER)])
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn serde(library: &str, parameters: &[(&str, &str)]) -> SerDeInfo {
    let parameters = (parameters.iter())
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    SerDeInfo::builder()
        .serialization_library(library)
        .set_parameters(Some(parameters))
        .build()
}

fn columns<'a>(fields: impl Iterator<Item = &'a Field>, text: bool) -> Result<Vec<Column>, String> {
    fields
        .map(|field| column_named(field.name(), &hive_type(field.data_type(), text)))
        .collect()
}

fn column_named(name: &str, kind: &str) -> Result<Column, String> {
    Column::builder()
        .name(name)
        .r#type(kind)
        .build()
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests;
