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
//!
//! A newer writer version with fields the stream's schema lacks (registered later, such as an
//! added optional field) widens the reader: the fields are appended, nullable, and decoded
//! into columns of their own beside the stream's (`DecodedBatch::added`), which the tables
//! gain (`sluice_lake::evolution`). Older writers read as null there.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow_avro::reader::{Decoder as BodyDecoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, CONFLUENT_MAGIC, Fingerprint, FingerprintAlgorithm, SchemaStore,
};

use super::confluent::{Framing, Refusal, RegisteredSchema, WriterSchemas, of_type, writer_of};
use super::conform::{Conformed, conform};
use super::{RawRecord, RejectKind, Rejected, reject};
use crate::schema::avro::{
    PLAIN_AVRO_ID, avro_arrow_schema, fields_from_avro_schema, with_fields_added_by,
};
use crate::schema::{SchemaField, StreamSchema};

/// Decodes a stream's Avro records; shared by every thread decoding the stream, which learn
/// writer schemas together.
#[derive(Debug)]
pub struct AvroRecords {
    /// What every record is read as: the stream's schema, and the fields newer writer
    /// versions added since.
    reader: RwLock<Arc<Reader>>,
    framing: Framing,
    /// The writer schemas that records name (for plain Avro, the reader under id 0).
    writers: WriterSchemas<AvroSchema>,
    /// Names a writer's added field cannot take: the table's other columns (lineage,
    /// date/hour, derived).
    reserved: Vec<String>,
}

/// The schema records are read as.
#[derive(Debug)]
struct Reader {
    /// As Avro.
    schema: AvroSchema,
    /// What arrow-avro decodes records to under it.
    decoded: SchemaRef,
    /// The fields beyond the stream's own, which newer writer versions added: columns of
    /// their own (`DecodedBatch::added`).
    added: Vec<SchemaField>,
}

impl AvroRecords {
    /// Records read as the Avro schema `reader` (JSON text), which arrow-avro decodes to
    /// `decoded`; fields newer writers add are not taken under the `reserved` names.
    pub fn new(reader: &str, decoded: SchemaRef, framing: Framing, reserved: Vec<String>) -> Self {
        let reader = Reader {
            schema: AvroSchema::new(reader.to_string()),
            decoded,
            added: Vec::new(),
        };
        let writers = WriterSchemas::default();
        if framing == Framing::Plain {
            writers.insert(PLAIN_AVRO_ID, Ok(reader.schema.clone()));
        }
        Self {
            reader: RwLock::new(Arc::new(reader)),
            framing,
            writers,
            reserved,
        }
    }

    fn reader(&self) -> Arc<Reader> {
        super::current(&self.reader)
    }

    /// The schema ids of `payloads` not learned yet (none for plain Avro).
    pub fn ids_to_learn<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        self.framing.ids_to_learn(&self.writers, payloads)
    }

    /// Learns writer schema `id` as the registry holds it, or why it has none. A writer
    /// with top-level fields the reader lacks adds them to the reader (nullable), when every
    /// writer learned so far can still be read.
    pub fn learn(&self, id: u32, registered: Result<RegisteredSchema, Refusal>) {
        let writer = registered.and_then(|registered| {
            of_type(id, &registered, "AVRO", "Avro")?;
            let writer = AvroSchema::new(registered.schema);
            self.add_fields_of(id, &writer);
            self.readable(id, writer)
        });
        self.writers.insert(id, writer);
    }

    /// Adopts a reader with the fields `writer` adds, if it reads `writer` and every writer
    /// learned so far; otherwise the reader stays (and `writer`'s new fields are skipped).
    fn add_fields_of(&self, id: u32, writer: &AvroSchema) {
        // Held throughout: two writers adding fields at once must not undo each other.
        let mut reader = self.reader.write().unwrap_or_else(|p| p.into_inner());
        let Some(json) = with_fields_added_by(
            &reader.schema.json_string,
            &writer.json_string,
            &self.reserved,
        ) else {
            return;
        };
        let (Ok(decoded), Ok(fields)) = (avro_arrow_schema(&json), fields_from_avro_schema(&json))
        else {
            return;
        };
        let own = reader.decoded.fields().len() - reader.added.len();
        let candidate = Reader {
            schema: AvroSchema::new(json),
            decoded,
            added: fields[own..].to_vec(),
        };
        let learned = self.writers.read();
        let reads_all = std::iter::once((id, writer))
            .chain((learned.iter()).filter_map(|(id, writer)| Some((*id, writer.as_ref().ok()?))))
            .all(|(id, writer)| body_decoder(&candidate.schema, id, writer, 1).is_ok());
        drop(learned);
        if reads_all {
            *reader = Arc::new(candidate);
        }
    }

    /// The writer schema, if its records can be read as the stream's schema.
    fn readable(&self, id: u32, writer: AvroSchema) -> Result<AvroSchema, Refusal> {
        match body_decoder(&self.reader().schema, id, &writer, 1) {
            Ok(_) => Ok(writer),
            Err(err) => Err((
                RejectKind::Incompatible,
                format!("writer schema id {id} cannot be read as the stream's schema: {err}"),
            )),
        }
    }

    /// Decodes the `records` that passed the size checks into columns of the stream's fields
    /// (in the types `schema` gives them), then those of the fields newer writers added;
    /// returns them with the records they hold, in input order. Records that cannot become
    /// rows go to `rejected`.
    pub(super) fn decode<'r>(
        &self,
        schema: &StreamSchema,
        records: &[&'r RawRecord<'r>],
        rejected: &mut Vec<Rejected>,
    ) -> Conformed<'r> {
        let reader = self.reader();
        let writers = self.writers.read();
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
            match self.decode_run(&reader, &run, &mut body) {
                Ok(decoded) => {
                    batches.push(decoded.batch);
                    kept.extend(decoded.good);
                    rejected.extend(decoded.bad);
                }
                Err(reason) => rejected.extend(
                    run.records
                        .iter()
                        .map(|r| reject(r, RejectKind::Schema, reason.clone())),
                ),
            }
        }
        let decoded =
            concat_batches(&reader.decoded, &batches).expect("every run decodes to the reader");
        conform(schema, &reader.added, decoded, kept, rejected)
    }

    /// The writer schema a payload was written with, or why it cannot be read.
    fn writer_of<'w>(
        &self,
        payload: &[u8],
        writers: &'w HashMap<u32, Result<AvroSchema, Refusal>>,
    ) -> Result<(u32, &'w AvroSchema), Refusal> {
        match self.framing {
            Framing::Confluent => writer_of(writers, payload),
            Framing::Plain => Ok((
                PLAIN_AVRO_ID,
                writers[&PLAIN_AVRO_ID]
                    .as_ref()
                    .expect("the stream's own schema"),
            )),
        }
    }

    /// Decodes one run of records of one writer schema. A body that does not decode to
    /// exactly one row, using every byte, is rejected, and the decoder rebuilt. On error (the
    /// decoder could not be built) none of the run's records became rows.
    fn decode_run<'r>(
        &self,
        reader: &Reader,
        run: &Run<'r, '_>,
        body: &mut Vec<u8>,
    ) -> Result<DecodedRun<'r>, String> {
        let decoder_of_run = || body_decoder(&reader.schema, run.id, run.writer, run.records.len());
        let mut decoder = decoder_of_run()?;
        let mut good: Vec<&RawRecord> = Vec::with_capacity(run.records.len());
        let mut bad = Vec::new();
        for &record in &run.records {
            let framed = self.framed(record.payload.unwrap_or_default(), body);
            match decode_one(&mut decoder, framed) {
                Ok(()) => good.push(record),
                Err(reason) => {
                    bad.push(reject(
                        record,
                        RejectKind::Schema,
                        format!(
                            "not an Avro record of writer schema id {}: {reason}",
                            run.id
                        ),
                    ));
                    decoder = decoder_of_run()?;
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
            .unwrap_or_else(|| RecordBatch::new_empty(reader.decoded.clone()));
        Ok(DecodedRun { batch, good, bad })
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

/// A decoder of records of writer schema `id` as `reader`, `rows` at a time.
fn body_decoder(
    reader: &AvroSchema,
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
        .with_reader_schema(reader.clone())
        .with_active_fingerprint(Fingerprint::Id(id))
        .with_batch_size(rows.max(1))
        .build_decoder()
        .map_err(|err| err.to_string())
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

/// A run's rows, the records they came from, and the records refused.
struct DecodedRun<'r> {
    batch: RecordBatch,
    good: Vec<&'r RawRecord<'r>>,
    bad: Vec<Rejected>,
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

#[cfg(test)]
mod tests;
