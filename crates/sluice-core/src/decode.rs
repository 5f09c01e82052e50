//! Kafka payloads decoded in batches straight into Arrow, by the stream's schema.
//!
//! The happy path is one pass of arrow-json's tape decoder over the whole batch: no per-event
//! `serde_json::Value`. When the batch fails (a record is not JSON, has a wrong type, holds two
//! values…), the batch is bisected until every bad record stands alone, so a bad record costs
//! O(log n) re-decodes and never takes its neighbours down with it. Rejected records carry their
//! partition, offset and the reason, for the log and the dead-letter topic.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType,
};
use arrow::error::ArrowError;
use arrow::json::ReaderBuilder;

use crate::config::defaults::MAX_JSON_DEPTH;
use crate::event_time::date_and_hour;
use crate::schema::{StreamSchema, utc_micros};

/// How many `{` and `[` bytes `payload` holds, written as a sum of comparisons: a form the
/// compiler can vectorize, where `filter(…).count()` branches on every byte.
fn opening_brackets(payload: &[u8]) -> usize {
    payload
        .iter()
        .map(|&b| usize::from((b == b'{') | (b == b'[')))
        .sum()
}

/// One Kafka record to decode.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The record's value; `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    /// The Kafka partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// A record that could not become a row, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The Kafka partition of the record.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// What was wrong, for people.
    pub reason: String,
}

/// The result of decoding a batch of records.
#[derive(Debug)]
pub struct DecodedBatch {
    /// The good records as rows of the table schema, in input order.
    pub batch: RecordBatch,
    /// The records that were skipped.
    pub rejected: Vec<Rejected>,
}

/// Decodes JSON records of one stream into rows of its table schema.
#[derive(Debug, Clone)]
pub struct Decoder {
    schema: Arc<StreamSchema>,
    /// Records longer than this many bytes are rejected.
    max_record_size: usize,
    /// What arrow-json decodes into: the stream's fields, event time as epoch milliseconds so
    /// that RFC 3339 text and epoch-millisecond numbers both parse.
    json_schema: SchemaRef,
    table_schema: SchemaRef,
}

impl Decoder {
    /// A decoder for records of this stream, rejecting records over `max_record_size` bytes.
    pub fn new(schema: Arc<StreamSchema>, max_record_size: usize) -> Self {
        let event_time = schema.event_time_index();
        let json_fields: Vec<Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let ty = if index == event_time {
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
                } else {
                    field.ty.arrow()
                };
                Field::new(&field.name, ty, true)
            })
            .collect();
        let table_schema = schema.table_schema();
        Self {
            schema,
            max_record_size,
            json_schema: Arc::new(Schema::new(json_fields)),
            table_schema,
        }
    }

    /// The schema of the batches this decoder produces.
    pub fn table_schema(&self) -> &SchemaRef {
        &self.table_schema
    }

    /// Decodes `records` read from `topic`; `ingested_at_us` stamps every row.
    pub fn decode(
        &self,
        topic: &str,
        records: &[RawRecord<'_>],
        ingested_at_us: i64,
    ) -> DecodedBatch {
        let mut rejected = Vec::new();
        let candidates: Vec<&RawRecord<'_>> = records
            .iter()
            .filter(|record| match self.refuse_before_parsing(record.payload) {
                None => true,
                Some(reason) => {
                    rejected.push(reject(record, reason));
                    false
                }
            })
            .collect();
        let mut pieces = Vec::new();
        self.decode_isolating(&candidates, &mut pieces, &mut rejected);
        let (json_rows, kept) =
            match concat_batches(&self.json_schema, pieces.iter().map(|(b, _)| b)) {
                Ok(batch) => (
                    batch,
                    pieces
                        .into_iter()
                        .flat_map(|(_, kept)| kept)
                        .collect::<Vec<_>>(),
                ),
                Err(err) => unreachable!("pieces share the decoder's schema: {err}"),
            };
        let (json_rows, kept) = self.drop_invalid_rows(json_rows, kept, &mut rejected);
        let batch = self.to_table_rows(topic, json_rows, &kept, ingested_at_us);
        let batch = self.add_derived(batch, &kept, &mut rejected);
        rejected.sort_by_key(|r| (r.partition, r.offset));
        DecodedBatch { batch, rejected }
    }

    /// Why a payload is refused before JSON parsing: empty, too large, or nested too deep.
    fn refuse_before_parsing(&self, payload: Option<&[u8]>) -> Option<String> {
        let payload = match payload {
            Some(payload) if !payload.is_empty() => payload,
            _ => return Some("empty payload (a tombstone or zero bytes)".into()),
        };
        if payload.len() > self.max_record_size {
            return Some(format!(
                "record of {} bytes is over the stream's max_record_size of {} bytes",
                payload.len(),
                self.max_record_size
            ));
        }
        // Nesting deeper than the limit needs at least one opening byte per level; counting
        // them is a fast loop, the full scan is for the rare record that has that many.
        if payload.len() > MAX_JSON_DEPTH
            && opening_brackets(payload) > MAX_JSON_DEPTH
            && json_depth(payload) > MAX_JSON_DEPTH
        {
            return Some(format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"));
        }
        None
    }

    /// Decodes `records`, bisecting on failure; pushes good pieces in input order.
    fn decode_isolating<'r>(
        &self,
        records: &[&'r RawRecord<'r>],
        pieces: &mut Vec<(RecordBatch, Vec<&'r RawRecord<'r>>)>,
        rejected: &mut Vec<Rejected>,
    ) {
        if records.is_empty() {
            return;
        }
        match self.decode_json(records) {
            Ok(batch) => pieces.push((batch, records.to_vec())),
            Err(reason) if records.len() == 1 => rejected.push(reject(records[0], reason)),
            Err(_) => {
                let (left, right) = records.split_at(records.len() / 2);
                self.decode_isolating(left, pieces, rejected);
                self.decode_isolating(right, pieces, rejected);
            }
        }
    }

    /// One arrow-json pass; fails unless every record yields exactly one row.
    fn decode_json(&self, records: &[&RawRecord<'_>]) -> Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(self.json_schema.clone())
            .with_batch_size(records.len() + 1)
            .build_decoder()
            .map_err(|err| err.to_string())?;
        for record in records {
            let payload = record.payload.unwrap_or_default();
            // arrow-json validates the batch's UTF-8 as a whole (SIMD); a batch that fails is
            // bisected down to single records, and only then is each record checked here, so
            // that the reason names the problem.
            if records.len() == 1 {
                std::str::from_utf8(payload)
                    .map_err(|err| format!("payload is not UTF-8: {err}"))?;
            }
            decoder
                .decode(payload)
                .map_err(|err| format!("not valid JSON: {}", describe(err)))?;
            if decoder.has_partial_record() {
                return Err("payload is not complete JSON (truncated?)".into());
            }
        }
        let batch = decoder
            .flush()
            .map_err(|err| format!("does not match the schema: {}", describe(err)))?
            .unwrap_or_else(|| RecordBatch::new_empty(self.json_schema.clone()));
        match (records.len(), batch.num_rows()) {
            (expected, got) if expected == got => Ok(batch),
            (1, got) => Err(format!(
                "payload holds {got} JSON values; expected exactly one object"
            )),
            (expected, got) => Err(format!("{expected} records gave {got} rows")),
        }
    }

    /// Removes rows that parsed but cannot be stored: a required field null or absent, a number
    /// that overflowed (JSON has no infinity, yet `1e999` parses as one), a time outside years
    /// 1 to 9999 (arrow-json saturates huge epoch numbers).
    fn drop_invalid_rows<'r>(
        &self,
        batch: RecordBatch,
        kept: Vec<&'r RawRecord<'r>>,
        rejected: &mut Vec<Rejected>,
    ) -> (RecordBatch, Vec<&'r RawRecord<'r>>) {
        let checks: Vec<(usize, &str, Check)> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .flat_map(|(index, field)| {
                let column = batch.column(index);
                let required = field.required.then_some(Check::Required);
                let range = match column.data_type() {
                    DataType::Float64 => Some(Check::Finite),
                    DataType::Timestamp(unit, _) => Some(Check::Time(*unit)),
                    _ => None,
                };
                [required, range]
                    .into_iter()
                    .flatten()
                    .map(move |check| (index, field.name.as_str(), check))
            })
            .collect();
        let bad = |row: usize| -> Option<String> {
            let failed: Vec<String> = checks
                .iter()
                .filter(|(index, _, check)| !check.passes(batch.column(*index), row))
                .map(|(_, name, check)| check.describe(name))
                .collect();
            (!failed.is_empty()).then(|| failed.join("; "))
        };
        let mut keep = vec![true; batch.num_rows()];
        for (row, slot) in keep.iter_mut().enumerate() {
            if let Some(reason) = bad(row) {
                *slot = false;
                rejected.push(reject(kept[row], reason));
            }
        }
        if keep.iter().all(|k| *k) {
            return (batch, kept);
        }
        let mask = BooleanArray::from(keep.clone());
        let batch = filter_record_batch(&batch, &mask).expect("mask matches the batch length");
        let kept = kept
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(r, _)| r)
            .collect();
        (batch, kept)
    }

    /// Adds lineage and date/hour columns and stores event time as UTC microseconds.
    fn to_table_rows(
        &self,
        topic: &str,
        json_rows: RecordBatch,
        records: &[&RawRecord<'_>],
        ingested_at_us: i64,
    ) -> RecordBatch {
        let rows = json_rows.num_rows();
        let mut columns: Vec<ArrayRef> = json_rows.columns().to_vec();
        let event_time_index = self.schema.event_time_index();
        let event_time =
            cast(&columns[event_time_index], &utc_micros()).expect("ms → µs timestamp cast");
        let (date, hour) = date_and_hour(
            event_time
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("cast to µs"),
        );
        columns[event_time_index] = event_time;
        columns.extend([
            Arc::new(StringArray::from(vec![topic; rows])) as ArrayRef,
            Arc::new(Int32Array::from_iter_values(
                records.iter().map(|r| r.partition),
            )),
            Arc::new(Int64Array::from_iter_values(
                records.iter().map(|r| r.offset),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(vec![ingested_at_us; rows]).with_timezone("UTC"),
            ),
            Arc::new(date),
            Arc::new(hour),
        ]);
        let derived = self.schema.derived().len();
        let fields = &self.table_schema.fields()[..self.table_schema.fields().len() - derived];
        RecordBatch::try_new(Arc::new(Schema::new(fields.to_vec())), columns)
            .expect("columns follow the table schema")
    }
}

/// Epoch milliseconds of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59.999Z.
const TIME_RANGE_MS: (i64, i64) = (-62_135_596_800_000, 253_402_300_799_999);

/// A per-row check of a decoded column.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Not null.
    Required,
    /// Null or a finite float.
    Finite,
    /// Null or a time within [`TIME_RANGE_MS`], in this unit.
    Time(TimeUnit),
}

impl Check {
    fn passes(self, column: &ArrayRef, row: usize) -> bool {
        match self {
            Check::Required => column.is_valid(row),
            _ if column.is_null(row) => true,
            Check::Finite => column.as_primitive::<Float64Type>().value(row).is_finite(),
            Check::Time(TimeUnit::Millisecond) => {
                let ms = column.as_primitive::<TimestampMillisecondType>().value(row);
                (TIME_RANGE_MS.0..=TIME_RANGE_MS.1).contains(&ms)
            }
            Check::Time(TimeUnit::Microsecond) => {
                let us = column.as_primitive::<TimestampMicrosecondType>().value(row);
                (TIME_RANGE_MS.0 * 1000..=TIME_RANGE_MS.1 * 1000).contains(&us)
            }
            Check::Time(_) => true,
        }
    }

    fn describe(self, field: &str) -> String {
        match self {
            Check::Required => format!("missing or null required field {field}"),
            Check::Finite => format!("number out of range for float64 in field {field}"),
            Check::Time(_) => format!("time out of range (years 1 to 9999) in field {field}"),
        }
    }
}

impl Decoder {
    /// Appends each derived column to `batch`, in order. A row whose expression fails (such
    /// as a division by zero) is rejected with the reason; the batch is evaluated row by row
    /// then.
    fn add_derived(
        &self,
        batch: RecordBatch,
        records: &[&RawRecord<'_>],
        rejected: &mut Vec<Rejected>,
    ) -> RecordBatch {
        if self.schema.derived().is_empty() {
            return batch;
        }
        if let Ok(done) = self.derive_rows(&batch) {
            return done;
        }
        let mut good = Vec::new();
        for (row, record) in records.iter().enumerate().take(batch.num_rows()) {
            match self.derive_rows(&batch.slice(row, 1)) {
                Ok(done) => good.push(done),
                Err(reason) => rejected.push(reject(record, reason)),
            }
        }
        concat_batches(&self.table_schema, &good).expect("rows share the table schema")
    }

    fn derive_rows(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let mut batch = batch.clone();
        for (name, expr) in self.schema.derived() {
            let values = expr.evaluate(&batch)?;
            let mut fields = batch.schema().fields().to_vec();
            fields.push(Arc::new(Field::new(name, expr.data_type().clone(), true)));
            let mut columns = batch.columns().to_vec();
            columns.push(values);
            batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                .map_err(|e| e.to_string())?;
        }
        Ok(batch
            .with_schema(self.table_schema.clone())
            .expect("same fields"))
    }
}

/// The deepest nesting of objects and arrays in a JSON text (brackets in strings ignored).
pub fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn reject(record: &RawRecord<'_>, reason: String) -> Rejected {
    Rejected {
        partition: record.partition,
        offset: record.offset,
        reason,
    }
}

/// arrow-json's messages without the "Json error: " prefix.
fn describe(err: ArrowError) -> String {
    match err {
        ArrowError::JsonError(message) => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
