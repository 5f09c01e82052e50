//! Kafka payloads decoded in batches straight into Arrow, by the stream's schema: JSON (here;
//! plain, or in the Confluent wire format, [`confluent`]), Avro ([`avro`]) or Protobuf
//! ([`protobuf`]).
//!
//! Each JSON record is read by serde_json in one pass into typed cells ([`row`]) that are appended
//! to the columns' Arrow builders ([`columns`]) once the whole record has proved good: no
//! per-event `serde_json::Value`, and a bad record is rejected alone, with its partition, offset
//! and the reason (for the log and the dead-letter topic), while its neighbours become rows.

pub mod avro;
mod columns;
pub mod confluent;
mod conform;
pub mod json_schema;
pub mod protobuf;
mod rfc3339;
mod row;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};

use self::avro::AvroRecords;
use self::columns::ColumnBuilder;
use self::confluent::{Framing, HEADER, Refusal, RegisteredSchema, writer_of};
use self::conform::Conformed;
use self::json_schema::{JsonSchemaRecords, JsonWriter};
use self::protobuf::ProtoRecords;
use self::row::Row;
use crate::config::defaults::MAX_JSON_DEPTH;
use crate::config::{Stream, StreamFormat};
use crate::event_time::date_and_hour;
use crate::schema::{SchemaField, StreamSchema};

/// What `lock` holds now (a decoder's reader, or the fields writers added), even when a
/// thread panicked holding it: it is only ever replaced whole.
fn current<T: ?Sized>(lock: &std::sync::RwLock<Arc<T>>) -> Arc<T> {
    lock.read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Epoch microseconds of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59.999999Z: the event
/// times a row may have.
const TIME_RANGE_US: (i64, i64) = (-62_135_596_800_000_000, 253_402_300_799_999_999);

/// How many `{` and `[` bytes `payload` holds: memchr's vectorized search, quick on records
/// that hold a few.
fn opening_brackets(payload: &[u8]) -> usize {
    memchr::memchr2_iter(b'{', b'[', payload).count()
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
    /// What kind of problem, for counting.
    pub kind: RejectKind,
    /// What was wrong, for people.
    pub reason: String,
}

/// What kind of problem kept a record from becoming a row: few values, fit for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// No payload, or zero bytes (a tombstone).
    Empty,
    /// Over the stream's `max_record_size`.
    TooLarge,
    /// JSON nested deeper than the decoder follows.
    TooDeep,
    /// Not JSON, or JSON that does not fit the stream's fields; or an Avro body that does
    /// not decode by its writer schema.
    Schema,
    /// A derived column's expression failed on it (such as a division by zero).
    Derived,
    /// Not in the wire format the stream declares (a magic byte other than 0, too short).
    WireFormat,
    /// Written with a schema id the registry does not know.
    UnknownSchema,
    /// Written with a schema that cannot be read as the stream's schema.
    Incompatible,
}

impl RejectKind {
    /// Its name as a label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::TooDeep => "too_deep",
            Self::Schema => "schema",
            Self::Derived => "derived",
            Self::WireFormat => "wire_format",
            Self::UnknownSchema => "unknown_schema",
            Self::Incompatible => "incompatible_schema",
        }
    }
}

/// The result of decoding a batch of records.
#[derive(Debug)]
pub struct DecodedBatch {
    /// The good records as rows of the table schema, in input order.
    pub batch: RecordBatch,
    /// Columns beside the table schema's, one value per row of `batch`: fields that newer
    /// writer versions added (Avro through a registry). Tables gain them; windows, alerts and
    /// side outputs see `batch` alone.
    pub added: Vec<(FieldRef, ArrayRef)>,
    /// The records that were skipped.
    pub rejected: Vec<Rejected>,
}

impl DecodedBatch {
    /// The rows with the added columns after the table schema's.
    pub fn with_added(&self) -> RecordBatch {
        if self.added.is_empty() {
            return self.batch.clone();
        }
        let fields: Vec<FieldRef> = (self.batch.schema().fields().iter().cloned())
            .chain(self.added.iter().map(|(field, _)| field.clone()))
            .collect();
        let columns = (self.batch.columns().iter().cloned())
            .chain(self.added.iter().map(|(_, column)| column.clone()))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("added columns have a value per row")
    }
}

/// The JSON Schema writers learned, by schema id.
type JsonWriters = HashMap<u32, Result<JsonWriter, Refusal>>;

/// Decodes records of one stream into rows of its table schema.
#[derive(Debug, Clone)]
pub struct Decoder {
    schema: Arc<StreamSchema>,
    /// Records longer than this many bytes are rejected.
    max_record_size: usize,
    table_schema: SchemaRef,
    format: Format,
}

/// How a decoder reads records, with the writer schemas learned so far.
#[derive(Debug, Clone)]
enum Format {
    /// JSON objects.
    Json,
    /// JSON objects in the Confluent wire format.
    FramedJson(Arc<JsonSchemaRecords>),
    /// Avro records.
    Avro(Arc<AvroRecords>),
    /// Protobuf messages.
    Protobuf(Arc<ProtoRecords>),
}

impl Decoder {
    /// A decoder for JSON records of this stream, rejecting records over `max_record_size`
    /// bytes.
    pub fn new(schema: Arc<StreamSchema>, max_record_size: usize) -> Self {
        let table_schema = schema.table_schema();
        Self {
            schema,
            max_record_size,
            table_schema,
            format: Format::Json,
        }
    }

    /// A decoder for records of `stream`, in its format.
    pub fn of_stream(stream: &Stream) -> Self {
        let decoder = Self::new(stream.schema.clone(), stream.max_record_size);
        match &stream.format {
            StreamFormat::Json => decoder,
            StreamFormat::JsonSchema { .. } => {
                let json = JsonSchemaRecords::new(decoder.column_names());
                Self {
                    format: Format::FramedJson(Arc::new(json)),
                    ..decoder
                }
            }
            StreamFormat::Avro {
                schema,
                decoded,
                registry,
            } => {
                let reserved = decoder.column_names();
                let avro =
                    AvroRecords::new(schema, decoded.clone(), Framing::of(registry), reserved);
                Self {
                    format: Format::Avro(Arc::new(avro)),
                    ..decoder
                }
            }
            StreamFormat::Protobuf { message, registry } => {
                let reserved = decoder.column_names();
                let protobuf = ProtoRecords::new(message.clone(), Framing::of(registry), reserved);
                Self {
                    format: Format::Protobuf(Arc::new(protobuf)),
                    ..decoder
                }
            }
        }
    }

    /// The names of the table's columns (the stream's, lineage, date/hour, derived): what a
    /// field a newer writer adds cannot be called.
    fn column_names(&self) -> Vec<String> {
        (self.table_schema.fields().iter())
            .map(|field| field.name().clone())
            .collect()
    }

    /// The writer schema ids that `payloads` name and this decoder has not learned (none
    /// when the stream's records name none).
    pub fn ids_to_learn<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        match &self.format {
            Format::Json => Vec::new(),
            Format::FramedJson(json) => json.writers.ids_to_learn(payloads),
            Format::Avro(avro) => avro.ids_to_learn(payloads),
            Format::Protobuf(protobuf) => protobuf.ids_to_learn(payloads),
        }
    }

    /// Learns writer schema `id` as a registry holds it, or why it has none (its records are
    /// then refused as of an unknown schema). Shared with every clone of this decoder.
    pub fn learn(&self, id: u32, registered: Result<RegisteredSchema, String>) {
        let registered = registered.map_err(|reason| (RejectKind::UnknownSchema, reason));
        match &self.format {
            Format::Json => {}
            Format::FramedJson(json) => json.learn(&self.schema, id, registered),
            Format::Avro(avro) => avro.learn(id, registered),
            Format::Protobuf(protobuf) => protobuf.learn(id, registered),
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
        let conformed = match &self.format {
            Format::Json => self.decode_json(records, None, &mut rejected),
            Format::FramedJson(json) => {
                let writers = json.writers.read();
                // After the writers: every added field a writer names is in it.
                let added = json.added();
                self.decode_json(records, Some((&writers, &added)), &mut rejected)
            }
            Format::Avro(avro) => {
                let sized = self.sized(records, &mut rejected);
                avro.decode(&self.schema, &sized, &mut rejected)
            }
            Format::Protobuf(protobuf) => {
                let sized = self.sized(records, &mut rejected);
                protobuf.decode(&self.schema, &sized, &mut rejected)
            }
        };
        let Conformed {
            columns,
            kept,
            mut added,
        } = conformed;
        let batch = self.to_table_rows(topic, columns, &kept, ingested_at_us);
        let (batch, derived_rows) = self.add_derived(batch, &kept, &mut rejected);
        if let Some(rows) = derived_rows {
            for (_, column) in &mut added {
                *column = take(column, &rows, None).expect("rows of the batch");
            }
        }
        rejected.sort_by_key(|r| (r.partition, r.offset));
        DecodedBatch {
            batch,
            added,
            rejected,
        }
    }

    /// The records neither empty nor over the size limit; the others go to `rejected`.
    fn sized<'r>(
        &self,
        records: &'r [RawRecord<'r>],
        rejected: &mut Vec<Rejected>,
    ) -> Vec<&'r RawRecord<'r>> {
        records
            .iter()
            .filter(|record| match self.refuse_empty_or_large(record.payload) {
                Some((kind, reason)) => {
                    rejected.push(reject(record, kind, reason));
                    false
                }
                None => true,
            })
            .collect()
    }

    /// Reads JSON `records` into columns of the stream's fields; returns them with the
    /// records they hold. With `framed` (the writer schemas learned, and every field they
    /// added), records are in the Confluent wire format, and the added fields each writer
    /// declares are read into columns of their own (null for other writers' records).
    fn decode_json<'r>(
        &self,
        records: &'r [RawRecord<'r>],
        framed: Option<(&JsonWriters, &[SchemaField])>,
        rejected: &mut Vec<Rejected>,
    ) -> Conformed<'r> {
        let fields = self.schema.fields();
        let builders = |fields: &[SchemaField]| -> Vec<ColumnBuilder> {
            (fields.iter())
                .map(|field| ColumnBuilder::new(&field.ty, records.len()))
                .collect()
        };
        let added_fields = framed.map_or(&[][..], |(_, added)| added);
        let mut columns = builders(fields);
        let mut added = builders(added_fields);
        let mut kept = Vec::with_capacity(records.len());
        let mut row = Row::default();
        for record in records {
            let read = json_of(record.payload, framed.map(|(writers, _)| writers)).and_then(
                |(json, writer)| match self.refuse_before_parsing(json) {
                    Some(refused) => Err(refused),
                    None => {
                        let read_as = writer.map_or(fields, |w| &w.fields[..]);
                        (row.read(json.unwrap_or_default(), read_as))
                            .map(|()| writer)
                            .map_err(|reason| (RejectKind::Schema, reason))
                    }
                },
            );
            match read {
                Ok(writer) => {
                    let mut cells = row.cells.drain(..);
                    for (column, cell) in columns.iter_mut().zip(cells.by_ref()) {
                        column.append(cell);
                    }
                    let declared = writer.map_or(&[][..], |w| &w.added_at[..]);
                    let mut by_place: Vec<Option<row::Cell<'_>>> =
                        (0..added.len()).map(|_| None).collect();
                    for (&at, cell) in declared.iter().zip(cells) {
                        by_place[at] = Some(cell);
                    }
                    for (column, cell) in added.iter_mut().zip(by_place) {
                        column.append(cell.unwrap_or(row::Cell::Null));
                    }
                    kept.push(record);
                }
                Err((kind, reason)) => rejected.push(reject(record, kind, reason)),
            }
        }
        Conformed {
            columns: columns.into_iter().map(ColumnBuilder::finish).collect(),
            kept,
            added: (added_fields.iter().zip(added))
                .map(|(field, column)| {
                    let column = column.finish();
                    let field = Field::new(&field.name, column.data_type().clone(), true);
                    (Arc::new(field), column)
                })
                .collect(),
        }
    }

    /// Why a payload is refused before JSON parsing: empty, too large, or nested too deep.
    fn refuse_before_parsing(&self, payload: Option<&[u8]>) -> Option<(RejectKind, String)> {
        if let Some(refused) = self.refuse_empty_or_large(payload) {
            return Some(refused);
        }
        let payload = payload.unwrap_or_default();
        // Nesting deeper than the limit needs at least one opening byte per level; counting
        // them is a fast loop, the full scan is for the rare record that has that many.
        if payload.len() > MAX_JSON_DEPTH
            && opening_brackets(payload) > MAX_JSON_DEPTH
            && json_depth(payload) > MAX_JSON_DEPTH
        {
            let reason = format!("JSON nested deeper than {MAX_JSON_DEPTH} levels");
            return Some((RejectKind::TooDeep, reason));
        }
        None
    }

    /// Why a payload is refused in any format: empty, or over the stream's size limit.
    fn refuse_empty_or_large(&self, payload: Option<&[u8]>) -> Option<(RejectKind, String)> {
        let payload = match payload {
            Some(payload) if !payload.is_empty() => payload,
            _ => {
                let reason = "empty payload (a tombstone or zero bytes)";
                return Some((RejectKind::Empty, reason.into()));
            }
        };
        if payload.len() > self.max_record_size {
            let reason = format!(
                "record of {} bytes is over the stream's max_record_size of {} bytes",
                payload.len(),
                self.max_record_size
            );
            return Some((RejectKind::TooLarge, reason));
        }
        None
    }

    /// Adds lineage and date/hour columns to the stream's fields' `columns`.
    fn to_table_rows(
        &self,
        topic: &str,
        mut columns: Vec<ArrayRef>,
        records: &[&RawRecord<'_>],
        ingested_at_us: i64,
    ) -> RecordBatch {
        let rows = records.len();
        let (date, hour) = date_and_hour(
            columns[self.schema.event_time_index()]
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("event time is read as UTC microseconds"),
        );
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

impl Decoder {
    /// Appends each derived column to `batch`, in order. A row whose expression fails (such
    /// as a division by zero) is rejected with the reason; the batch is evaluated row by row
    /// then, and the rows kept are returned too.
    fn add_derived(
        &self,
        batch: RecordBatch,
        records: &[&RawRecord<'_>],
        rejected: &mut Vec<Rejected>,
    ) -> (RecordBatch, Option<UInt32Array>) {
        if self.schema.derived().is_empty() {
            return (batch, None);
        }
        if let Ok(done) = self.derive_rows(&batch) {
            return (done, None);
        }
        let mut good = Vec::new();
        let mut kept = Vec::new();
        for (row, record) in records.iter().enumerate().take(batch.num_rows()) {
            match self.derive_rows(&batch.slice(row, 1)) {
                Ok(done) => {
                    good.push(done);
                    kept.push(row as u32);
                }
                Err(reason) => rejected.push(reject(record, RejectKind::Derived, reason)),
            }
        }
        let batch = concat_batches(&self.table_schema, &good).expect("rows share the table schema");
        (batch, Some(UInt32Array::from(kept)))
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

/// The JSON text of a payload: all of it, or with `writers` what follows the Confluent wire
/// format's header, once its schema id is known to be readable.
fn json_of<'p, 'w>(
    payload: Option<&'p [u8]>,
    writers: Option<&'w JsonWriters>,
) -> Result<(Option<&'p [u8]>, Option<&'w JsonWriter>), Refusal> {
    match (payload, writers) {
        (Some(payload), Some(writers)) if !payload.is_empty() => {
            let (_, writer) = writer_of(writers, payload)?;
            Ok((Some(&payload[HEADER..]), Some(writer)))
        }
        _ => Ok((payload, None)),
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

fn reject(record: &RawRecord<'_>, kind: RejectKind, reason: String) -> Rejected {
    Rejected {
        partition: record.partition,
        offset: record.offset,
        kind,
        reason,
    }
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
