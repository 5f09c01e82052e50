//! The lake as both drivers open it: a stream's tables and window tables (created on first
//! use) as [`Sink`]s, where a window table left a partition, and the newest event time a
//! commit lands. The one place that picks a sink for a table (today every table is Delta).

use std::collections::HashMap;

use anyhow::Result;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::TimestampMicrosecondType;
use sluice_core::config::{Table, Window};
use sluice_lake::{DeltaSink, LakeTable, Sink};

use crate::windows::{CLOSE_US, MAX_EVENT_US, REPLAY_FROM, REPLAY_MAX_US, WindowMarks};

/// Opens (or creates) a stream's table, whose rows have `schema`.
pub async fn open_table(
    config: &Table,
    storage_options: &HashMap<String, String>,
    schema: &SchemaRef,
) -> Result<Box<dyn Sink>> {
    let table = LakeTable::open_or_create(
        &config.name,
        &config.uri,
        storage_options,
        schema,
        &config.partition_by,
    )
    .await?;
    Ok(Box::new(DeltaSink::new(table)))
}

/// Opens (or creates) a window table.
pub async fn open_window_table(
    config: &Window,
    storage_options: &HashMap<String, String>,
) -> Result<Box<dyn Sink>> {
    let table = LakeTable::open_or_create(
        &config.name,
        &config.uri,
        storage_options,
        config.aggregation.output_schema(),
        &config.partition_by,
    )
    .await?;
    Ok(Box::new(DeltaSink::new(table)))
}

/// Where a window table left a partition.
pub async fn window_marks_of(
    table: &dyn Sink,
    (topic, partition): &(String, i32),
) -> Result<WindowMarks> {
    Ok(WindowMarks {
        committed: table.committed(topic, *partition).await?,
        replay_from: table.committed_mark(topic, *partition, REPLAY_FROM).await?,
        replay_max_us: table
            .committed_mark(topic, *partition, REPLAY_MAX_US)
            .await?,
        close_us: table.committed_mark(topic, *partition, CLOSE_US).await?,
        max_event_us: table
            .committed_mark(topic, *partition, MAX_EVENT_US)
            .await?,
    })
}

/// The newest value of the timestamp column `column` among `batches` (UTC microseconds), or
/// `None` when no batch has such a column or every value is null.
pub fn newest_timestamp_us(batches: &[RecordBatch], column: &str) -> Option<i64> {
    batches
        .iter()
        .filter_map(|batch| {
            let values = batch.column_by_name(column)?;
            let values = values.as_primitive_opt::<TimestampMicrosecondType>()?;
            arrow::compute::max(values)
        })
        .max()
}
