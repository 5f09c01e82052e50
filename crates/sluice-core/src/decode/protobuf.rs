//! Protobuf records straight into Arrow, by ptars-core: in the Confluent wire format (a zero
//! magic byte, a 4-byte big-endian schema id, the message indexes, the message), each id's
//! writer schema learned from a registry and checked against the stream's message; or plain
//! messages, all of the stream's message.
//!
//! Every record is decoded with the stream's own message descriptor: protobuf finds fields by
//! number, so a writer's message reads as the stream's when each field they share has the
//! same number, name and type (fields only the writer has are skipped; fields only the stream
//! has read as unset). That check is made once per writer schema and message, when the id is
//! learned. A batch is decoded in one pass; when a message in it does not decode, each record
//! is tried alone to find the bad ones, and the rest are decoded again (rare).

use std::collections::{HashMap, HashSet};

use arrow::array::{BinaryArray, RecordBatch};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use ptars_core::{PtarsConfig, binary_array_to_record_batch_direct};

use super::confluent::{
    Framing, HEADER, Refusal, RegisteredSchema, WriterSchemas, message_indexes, of_type, writer_of,
};
use super::conform::{Conformed, conform};
use super::{RawRecord, RejectKind, Rejected, reject};
use crate::schema::StreamSchema;
use crate::schema::protobuf::{ProtoFiles, StreamMessage, decoding};

/// Per message of a writer schema (by its index path), whether it reads as the stream's.
type WriterMessages = HashMap<Vec<usize>, Result<(), String>>;

/// Decodes a stream's Protobuf records; shared by every thread decoding the stream, which
/// learn writer schemas together.
#[derive(Debug)]
pub struct ProtoRecords {
    /// The stream's message: what every record is read as.
    reader: StreamMessage,
    framing: Framing,
    decoding: PtarsConfig,
    writers: WriterSchemas<WriterMessages>,
}

impl ProtoRecords {
    /// Records read as `reader`.
    pub fn new(reader: StreamMessage, framing: Framing) -> Self {
        Self {
            reader,
            framing,
            decoding: decoding(),
            writers: WriterSchemas::default(),
        }
    }

    /// The schema ids of `payloads` not learned yet (none for plain messages).
    pub fn ids_to_learn<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        self.framing.ids_to_learn(&self.writers, payloads)
    }

    /// Learns writer schema `id` as the registry holds it, or why it has none.
    pub fn learn(&self, id: u32, registered: Result<RegisteredSchema, Refusal>) {
        let writer = registered.and_then(|registered| {
            of_type(id, &registered, "PROTOBUF", "Protobuf")?;
            self.writer_messages(&registered).map_err(|err| {
                let reason = format!("writer schema id {id} is not a Protobuf schema: {err}");
                (RejectKind::Incompatible, reason)
            })
        });
        self.writers.insert(id, writer);
    }

    /// Compiles a registered schema and checks each of its messages against the stream's.
    fn writer_messages(&self, registered: &RegisteredSchema) -> Result<WriterMessages, String> {
        let mut files = ProtoFiles::default();
        for (name, schema) in &registered.references {
            files
                .add_registered(name, schema)
                .map_err(|err| format!("reference {name}: {err}"))?;
        }
        let root = files.add_registered("registered.proto", &registered.schema)?;
        let file = files.compile(&root)?;
        let mut messages = HashMap::new();
        let mut pending: Vec<(Vec<usize>, MessageDescriptor)> = file
            .messages()
            .enumerate()
            .map(|(index, message)| (vec![index], message))
            .collect();
        while let Some((path, message)) = pending.pop() {
            for (index, child) in message.child_messages().enumerate() {
                if !child.is_map_entry() {
                    pending.push(([path.as_slice(), &[index]].concat(), child));
                }
            }
            let readable = readable_as(&message, &self.reader.message, &mut HashSet::new());
            messages.insert(path, readable);
        }
        Ok(messages)
    }

    /// Decodes the `records` that passed the size checks into columns of the stream's fields;
    /// returns them with the records they hold, in input order. Records that cannot become
    /// rows go to `rejected`.
    pub(super) fn decode<'r>(
        &self,
        schema: &StreamSchema,
        records: &[&'r RawRecord<'r>],
        rejected: &mut Vec<Rejected>,
    ) -> Conformed<'r> {
        let writers = self.writers.read();
        let mut bodies = Vec::with_capacity(records.len());
        let mut kept = Vec::with_capacity(records.len());
        for &record in records {
            let payload = record.payload.unwrap_or_default();
            let body = match self.framing {
                Framing::Plain => Ok(payload),
                Framing::Confluent => framed_body(&writers, payload),
            };
            match body {
                Ok(body) => {
                    bodies.push(body);
                    kept.push(record);
                }
                Err((kind, reason)) => rejected.push(reject(record, kind, reason)),
            }
        }
        let (decoded, kept) = self.decode_bodies(bodies, kept, rejected);
        conform(schema, &[], decoded, kept, rejected)
    }

    /// Decodes message bodies in one pass; when that fails, finds the bodies that do not
    /// decode alone, rejects them, and decodes the others.
    fn decode_bodies<'r>(
        &self,
        bodies: Vec<&[u8]>,
        kept: Vec<&'r RawRecord<'r>>,
        rejected: &mut Vec<Rejected>,
    ) -> (RecordBatch, Vec<&'r RawRecord<'r>>) {
        let message = &self.reader.message;
        let decode = |bodies: &[&[u8]]| {
            let array = BinaryArray::from_iter_values(bodies.iter());
            binary_array_to_record_batch_direct(&array, message, &self.decoding)
        };
        if let Ok(batch) = decode(&bodies) {
            return (batch, kept);
        }
        let mut good_bodies = Vec::with_capacity(bodies.len());
        let mut good = Vec::with_capacity(kept.len());
        for (body, record) in bodies.into_iter().zip(kept) {
            match decode(&[body]) {
                Ok(_) => {
                    good_bodies.push(body);
                    good.push(record);
                }
                Err(err) => {
                    let reason = format!("not a Protobuf message {}: {err}", message.full_name());
                    rejected.push(reject(record, RejectKind::Schema, reason));
                }
            }
        }
        let batch = decode(&good_bodies).expect("each of these messages decoded alone");
        (batch, good)
    }
}

/// The message of a payload in the Confluent wire format, once its writer schema and message
/// are known to read as the stream's.
fn framed_body<'p>(
    writers: &HashMap<u32, Result<WriterMessages, Refusal>>,
    payload: &'p [u8],
) -> Result<&'p [u8], Refusal> {
    let (id, messages) = writer_of(writers, payload)?;
    let (path, used) = message_indexes(&payload[HEADER..])?;
    match messages.get(&path) {
        Some(Ok(())) => Ok(&payload[HEADER + used..]),
        Some(Err(reason)) => Err((
            RejectKind::Incompatible,
            format!(
                "message {path:?} of writer schema id {id} cannot be read as the stream's: {reason}"
            ),
        )),
        None => Err((
            RejectKind::WireFormat,
            format!("writer schema id {id} has no message at index {path:?}"),
        )),
    }
}

/// Whether messages written as `writer` read as `reader`: every field they share by number
/// has the same name, cardinality and type (nested messages alike); a reader field the writer
/// has under another number is refused. `seen` stops recursive messages.
fn readable_as(
    writer: &MessageDescriptor,
    reader: &MessageDescriptor,
    seen: &mut HashSet<(String, String)>,
) -> Result<(), String> {
    if !seen.insert((writer.full_name().into(), reader.full_name().into())) {
        return Ok(());
    }
    for field in reader.fields() {
        match writer.get_field(field.number()) {
            Some(written) => same_field(&written, &field, seen)?,
            None => {
                if let Some(moved) = writer.get_field_by_name(field.name()) {
                    return Err(format!(
                        "field {} is number {} in the writer's {} but {} in the stream's",
                        field.name(),
                        moved.number(),
                        writer.full_name(),
                        field.number()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn same_field(
    written: &FieldDescriptor,
    field: &FieldDescriptor,
    seen: &mut HashSet<(String, String)>,
) -> Result<(), String> {
    let differ = |what: String| {
        Err(format!(
            "field number {} is {what} in the writer's schema",
            field.number()
        ))
    };
    if written.name() != field.name() {
        return differ(format!(
            "{} (the stream's is {})",
            written.name(),
            field.name()
        ));
    }
    if written.is_list() != field.is_list() || written.is_map() != field.is_map() {
        return differ(format!("{} with another cardinality", field.name()));
    }
    match (written.kind(), field.kind()) {
        (Kind::Message(written), Kind::Message(read)) => readable_as(&written, &read, seen)
            .map_err(|err| format!("in field {}: {err}", field.name())),
        (Kind::Enum(_), Kind::Enum(_)) => Ok(()),
        (written, read) if written == read || widens(&written, &read) => Ok(()),
        (written, read) => differ(format!(
            "{} of type {written:?} (the stream's is {read:?})",
            field.name()
        )),
    }
}

/// Integer types whose values all read as a wider one on the wire.
fn widens(written: &Kind, read: &Kind) -> bool {
    matches!(
        (written, read),
        (Kind::Int32, Kind::Int64)
            | (Kind::Uint32, Kind::Uint64 | Kind::Int64)
            | (Kind::Sint32, Kind::Sint64)
    )
}

#[cfg(test)]
mod tests;
