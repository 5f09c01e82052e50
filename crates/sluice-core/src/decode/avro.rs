//! Avro records straight into Arrow, by arrow-avro: in the Confluent wire format (a zero magic
//! byte, a 4-byte big-endian schema id, the Avro body), each id's writer schema learned from a
//! registry and read as the stream's schema (Avro's schema resolution); or plain Avro bodies,
//! all of the stream's schema.
//!
//! A record is checked alone (its framing, its id, its body decoded to exactly one row and
//! every byte used), so a bad one is rejected with its reason while its neighbours become rows.
//! Records are decoded in runs of one writer schema; arrow-avro cannot take back a half-decoded
//! row, so after a bad body the run's decoder is rebuilt and its good records so far decoded
//! again (rare, and bounded by the batch).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use arrow::compute::{cast, concat_batches, filter};
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use arrow_avro::reader::{Decoder as BodyDecoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, CONFLUENT_MAGIC, Fingerprint, FingerprintAlgorithm, SchemaStore,
};

use super::{RawRecord, RejectKind, Rejected, TIME_RANGE_US, reject};
use crate::schema::avro::PLAIN_AVRO_ID;
use crate::schema::{StreamSchema, utc_micros};

/// Bytes before the Avro body in the Confluent wire format: the magic byte and the schema id.
const CONFLUENT_HEADER: usize = 5;

/// How a stream's Avro records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Confluent's wire format: magic byte, schema id, body.
    Confluent,
    /// The Avro body alone, written with the stream's schema.
    Plain,
}

/// What is known of one writer schema id.
#[derive(Debug, Clone)]
enum Writer {
    /// Its records decode into the stream's schema.
    Readable(AvroSchema),
    /// Its records cannot become rows, and why.
    Refused(RejectKind, String),
}

/// Decodes a stream's Avro records; shared by every thread decoding the stream, which learn
/// writer schemas together.
#[derive(Debug)]
pub struct AvroRecords {
    /// The stream's schema as Avro: what every record is read as.
    reader: AvroSchema,
    /// What arrow-avro decodes records to under `reader`.
    decoded: SchemaRef,
    framing: Framing,
    writers: RwLock<HashMap<u32, Writer>>,
}

impl AvroRecords {
    /// Records read as the Avro schema `reader` (JSON text), which arrow-avro decodes to
    /// `decoded`.
    pub fn new(reader: &str, decoded: SchemaRef, framing: Framing) -> Self {
        let reader = AvroSchema::new(reader.to_string());
        let mut writers = HashMap::new();
        if framing == Framing::Plain {
            writers.insert(PLAIN_AVRO_ID, Writer::Readable(reader.clone()));
        }
        Self {
            reader,
            decoded,
            framing,
            writers: RwLock::new(writers),
        }
    }

    /// How the records are framed.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The schema ids of `payloads` not learned yet, each once, in order of appearance.
    pub fn ids_to_learn<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        if self.framing == Framing::Plain {
            return Vec::new();
        }
        let writers = self.writers.read().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<u32> = Vec::new();
        for payload in payloads {
            if let Some(id) = confluent_id(payload)
                && !writers.contains_key(&id)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// Learns writer schema `id`: its Avro schema text as the registry holds it, or why the
    /// registry has none (its records are then rejected as of an unknown schema).
    pub fn learn(&self, id: u32, schema: Result<String, String>) {
        let writer = match schema {
            Ok(text) => self.readable(id, AvroSchema::new(text)),
            Err(reason) => Writer::Refused(RejectKind::UnknownSchema, reason),
        };
        let mut writers = self.writers.write().unwrap_or_else(|p| p.into_inner());
        writers.insert(id, writer);
    }

    /// Whether records of writer schema `writer` can be read as the stream's schema.
    fn readable(&self, id: u32, writer: AvroSchema) -> Writer {
        match self.body_decoder(id, &writer, 1) {
            Ok(_) => Writer::Readable(writer),
            Err(err) => Writer::Refused(
                RejectKind::Incompatible,
                format!("writer schema id {id} cannot be read as the stream's schema: {err}"),
            ),
        }
    }

    fn body_decoder(
        &self,
        id: u32,
        writer: &AvroSchema,
        rows: usize,
    ) -> Result<BodyDecoder, String> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store
            .set(Fingerprint::Id(id), writer.clone())
            .map_err(|err| err.to_string())?;
        ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_reader_schema(self.reader.clone())
            .with_active_fingerprint(Fingerprint::Id(id))
            .with_batch_size(rows.max(1))
            .build_decoder()
            .map_err(|err| err.to_string())
    }

    /// Decodes the `records` that passed the size checks into columns of the stream's fields
    /// (in the types `schema` gives them); returns them with the records they hold, in input
    /// order. Records that cannot become rows go to `rejected`.
    pub(super) fn decode<'r>(
        &self,
        schema: &StreamSchema,
        records: &[&'r RawRecord<'r>],
        rejected: &mut Vec<Rejected>,
    ) -> (Vec<ArrayRef>, Vec<&'r RawRecord<'r>>) {
        let writers = self.writers.read().unwrap_or_else(|p| p.into_inner());
        let mut runs = Runs::default();
        for &record in records {
            let payload = record.payload.unwrap_or_default();
            match self.writer_of(payload, &writers) {
                Ok((id, writer)) => runs.push(id, writer, record),
                Err((kind, reason)) => rejected.push(reject(record, kind, reason)),
            }
        }
        let mut batches = Vec::new();
        let mut kept = Vec::new();
        let mut body = Vec::new();
        for run in runs.0 {
            match self.decode_run(&run, &mut body, rejected) {
                Ok((batch, good)) => {
                    batches.push(batch);
                    kept.extend(good);
                }
                Err(reason) => rejected.extend(
                    run.records
                        .iter()
                        .map(|r| reject(r, RejectKind::Schema, reason.clone())),
                ),
            }
        }
        let decoded =
            concat_batches(&self.decoded, &batches).expect("every run decodes to the reader");
        conform(schema, decoded, kept, rejected)
    }

    /// The writer schema a payload was written with, or why it cannot be read.
    fn writer_of<'w>(
        &self,
        payload: &[u8],
        writers: &'w HashMap<u32, Writer>,
    ) -> Result<(u32, &'w AvroSchema), (RejectKind, String)> {
        let id = match self.framing {
            Framing::Plain => PLAIN_AVRO_ID,
            Framing::Confluent => confluent_header(payload)?,
        };
        match writers.get(&id) {
            Some(Writer::Readable(schema)) => Ok((id, schema)),
            Some(Writer::Refused(kind, reason)) => Err((*kind, reason.clone())),
            None => Err((
                RejectKind::UnknownSchema,
                format!("schema id {id} was not learned from the registry"),
            )),
        }
    }

    /// Decodes one run of records of one writer schema; returns the rows and the records that
    /// became them. A body that does not decode to exactly one row, using every byte, is
    /// rejected, and the decoder rebuilt.
    fn decode_run<'r>(
        &self,
        run: &Run<'r, '_>,
        body: &mut Vec<u8>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(RecordBatch, Vec<&'r RawRecord<'r>>), String> {
        let mut decoder = self.body_decoder(run.id, run.writer, run.records.len())?;
        let mut good: Vec<&RawRecord> = Vec::with_capacity(run.records.len());
        for &record in &run.records {
            let framed = self.framed(record.payload.unwrap_or_default(), body);
            match decode_one(&mut decoder, framed) {
                Ok(()) => good.push(record),
                Err(reason) => {
                    rejected.push(reject(
                        record,
                        RejectKind::Schema,
                        format!(
                            "not an Avro record of writer schema id {}: {reason}",
                            run.id
                        ),
                    ));
                    decoder = self.body_decoder(run.id, run.writer, run.records.len())?;
                    for replayed in &good {
                        let framed = self.framed(replayed.payload.unwrap_or_default(), body);
                        decode_one(&mut decoder, framed).map_err(|err| {
                            format!("a record decoded before did not again: {err}")
                        })?;
                    }
                }
            }
        }
        let batch = decoder
            .flush()
            .map_err(|err| err.to_string())?
            .unwrap_or_else(|| RecordBatch::new_empty(self.decoded.clone()));
        Ok((batch, good))
    }

    /// The bytes to feed arrow-avro for a payload: as it is in the Confluent wire format; for
    /// plain Avro, behind a header naming the stream's schema (written into `scratch`).
    fn framed<'b>(&self, payload: &'b [u8], scratch: &'b mut Vec<u8>) -> &'b [u8] {
        match self.framing {
            Framing::Confluent => payload,
            Framing::Plain => {
                scratch.clear();
                scratch.extend_from_slice(&CONFLUENT_MAGIC);
                scratch.extend_from_slice(&PLAIN_AVRO_ID.to_be_bytes());
                scratch.extend_from_slice(payload);
                scratch
            }
        }
    }
}

/// Feeds one framed record; it must give exactly one row and use every byte.
fn decode_one(decoder: &mut BodyDecoder, framed: &[u8]) -> Result<(), String> {
    let room = decoder.capacity();
    let used = decoder.decode(framed).map_err(|err| err.to_string())?;
    if used < framed.len() {
        return Err(format!(
            "the body ends early or has {} bytes too many",
            framed.len() - used
        ));
    }
    if decoder.capacity() + 1 != room {
        return Err("the body does not hold exactly one record".into());
    }
    Ok(())
}

/// The schema id of a payload in the Confluent wire format, if it is one.
fn confluent_id(payload: &[u8]) -> Option<u32> {
    confluent_header(payload).ok()
}

/// The schema id of a payload in the Confluent wire format, or why it is not one.
fn confluent_header(payload: &[u8]) -> Result<u32, (RejectKind, String)> {
    let wire = |reason: String| (RejectKind::WireFormat, reason);
    match payload {
        [magic, ..] if *magic != CONFLUENT_MAGIC[0] => Err(wire(format!(
            "magic byte 0x{magic:02x}, not 0: not in the Confluent wire format"
        ))),
        [_, id @ ..] if id.len() >= CONFLUENT_HEADER - 1 => {
            Ok(u32::from_be_bytes(id[..4].try_into().expect("four bytes")))
        }
        _ => Err(wire(format!(
            "{} bytes: shorter than the Confluent wire format's {CONFLUENT_HEADER}-byte header",
            payload.len()
        ))),
    }
}

/// Consecutive records of one writer schema.
struct Run<'r, 'w> {
    id: u32,
    writer: &'w AvroSchema,
    records: Vec<&'r RawRecord<'r>>,
}

#[derive(Default)]
struct Runs<'r, 'w>(Vec<Run<'r, 'w>>);

impl<'r, 'w> Runs<'r, 'w> {
    fn push(&mut self, id: u32, writer: &'w AvroSchema, record: &'r RawRecord<'r>) {
        match self.0.last_mut() {
            Some(run) if run.id == id => run.records.push(record),
            _ => self.0.push(Run {
                id,
                writer,
                records: vec![record],
            }),
        }
    }
}

/// Casts decoded columns to the stream's field types, with event time as UTC microseconds;
/// rows whose event time is missing or out of range are rejected.
fn conform<'r>(
    schema: &StreamSchema,
    decoded: RecordBatch,
    kept: Vec<&'r RawRecord<'r>>,
    rejected: &mut Vec<Rejected>,
) -> (Vec<ArrayRef>, Vec<&'r RawRecord<'r>>) {
    let event_time = event_time_micros(decoded.column(schema.event_time_index()));
    let in_range: BooleanArray = event_time
        .iter()
        .map(|us| Some(us.is_some_and(|us| (TIME_RANGE_US.0..=TIME_RANGE_US.1).contains(&us))))
        .collect();
    let name = &schema.event_time().name;
    let mut good = Vec::with_capacity(kept.len());
    for (record, ok) in kept.into_iter().zip(in_range.values().iter()) {
        if ok {
            good.push(record);
        } else {
            let reason = format!("event time field {name} is missing or out of range");
            rejected.push(reject(record, RejectKind::Schema, reason));
        }
    }
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let column = if index == schema.event_time_index() {
                Arc::new(event_time.clone()) as ArrayRef
            } else {
                let target = field.ty.arrow();
                let column = decoded.column(index);
                if column.data_type() == &target {
                    column.clone()
                } else {
                    cast(column, &target).expect("a lake type is a cast of the decoded type")
                }
            };
            filter(&column, &in_range).expect("same length")
        })
        .collect();
    (columns, good)
}

/// Event time as UTC microseconds from a decoded column: a timestamp, epoch milliseconds (a
/// long) or RFC 3339 text; null where it is none of them or overflows.
fn event_time_micros(column: &ArrayRef) -> TimestampMicrosecondArray {
    let micros = match column.data_type() {
        DataType::Int64 => column
            .as_primitive::<Int64Type>()
            .iter()
            .map(|ms| ms.and_then(|ms| ms.checked_mul(1000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => column
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .clone(),
        _ => cast(column, &utc_micros())
            .map(|cast| {
                cast.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .clone()
            })
            .unwrap_or_else(|_| TimestampMicrosecondArray::new_null(column.len())),
    };
    micros.with_timezone("UTC")
}

#[cfg(test)]
mod tests;
