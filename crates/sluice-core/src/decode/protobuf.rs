//! Protobuf records straight into Arrow, by ptars-core: in the Confluent wire format (a zero
//! magic byte, a 4-byte big-endian schema id, the message indexes, the message), each id's
//! writer schema learned from a registry and checked against the stream's message; or plain
//! messages, all of the stream's message.
//!
//! Every record is decoded with the reader message: protobuf finds fields by number, so a
//! writer's message reads as the reader's when each field they share has the same number,
//! name and type (fields only the reader has read as unset). That check is made once per
//! writer schema and message, when the id is learned. The reader starts as the stream's
//! message; a newer writer version's message of the same name with top-level fields the
//! reader lacks (scalars, and messages and enums the reader's files define, single or
//! repeated; not maps) widens it: the fields are appended, with their cardinality and presence
//! (older messages read as null for an `optional` field or a message, the default for a plain
//! proto3 scalar or enum, an empty list for a repeated field), and decoded into columns of
//! their own beside the stream's (`DecodedBatch::added`), when every writer learned so far
//! still reads as the widened reader. A writer's other extra fields are skipped. A writer
//! learned after that which uses an added field's number or name otherwise no longer reads
//! as the reader and is refused: which of two conflicting writers wins is the order they are
//! learned in. A batch is decoded in one pass; when a
//! message in it does not decode, each record is tried alone to find the bad ones, and the
//! rest are decoded again (rare).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use arrow::array::{BinaryArray, RecordBatch};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use ptars_core::{PtarsConfig, binary_array_to_record_batch_direct};

use super::confluent::{
    Framing, HEADER, Refusal, RegisteredSchema, WriterSchemas, message_indexes, of_type, writer_of,
};
use super::conform::{Conformed, conform};
use super::{RawRecord, RejectKind, Rejected, reject};
use crate::schema::protobuf::{
    ProtoFiles, StreamMessage, decoding, defined_for, fields_from_message, with_fields_added,
};
use crate::schema::{SchemaField, StreamSchema};

/// Per message of a writer schema (by its index path), the message if it reads as the reader,
/// else why not.
type WriterMessages = HashMap<Vec<usize>, Result<MessageDescriptor, String>>;

/// Decodes a stream's Protobuf records; shared by every thread decoding the stream, which
/// learn writer schemas together.
#[derive(Debug)]
pub struct ProtoRecords {
    /// What every record is read as: the stream's message, and the fields newer writer
    /// versions added since.
    reader: RwLock<Arc<Reader>>,
    framing: Framing,
    decoding: PtarsConfig,
    writers: WriterSchemas<WriterMessages>,
    /// Names a writer's added field cannot take: the table's other columns (lineage,
    /// date/hour, derived).
    reserved: Vec<String>,
}

/// The message records are read as.
#[derive(Debug)]
struct Reader {
    message: MessageDescriptor,
    /// The fields beyond the stream's own, which newer writer versions added: columns of
    /// their own (`DecodedBatch::added`).
    added: Vec<SchemaField>,
}

impl ProtoRecords {
    /// Records read as `reader`; fields newer writers add are not taken under the `reserved`
    /// names.
    pub fn new(reader: StreamMessage, framing: Framing, reserved: Vec<String>) -> Self {
        Self {
            reader: RwLock::new(Arc::new(Reader {
                message: reader.message,
                added: Vec::new(),
            })),
            framing,
            decoding: decoding(),
            writers: WriterSchemas::default(),
            reserved,
        }
    }

    fn reader(&self) -> Arc<Reader> {
        super::current(&self.reader)
    }

    /// The schema ids of `payloads` not learned yet (none for plain messages).
    pub fn ids_to_learn<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        self.framing.ids_to_learn(&self.writers, payloads)
    }

    /// Learns writer schema `id` as the registry holds it, or why it has none. Its message of
    /// the reader's name, with top-level fields the reader lacks ([`Self::widened_by`]), adds
    /// them to the reader when every writer learned so far still reads as the widened reader.
    pub fn learn(&self, id: u32, registered: Result<RegisteredSchema, Refusal>) {
        // Held throughout: two writers adding fields at once must not undo each other.
        let mut reader = self.reader.write().unwrap_or_else(|p| p.into_inner());
        let writer = registered.and_then(|registered| {
            of_type(id, &registered, "PROTOBUF", "Protobuf")?;
            let file = compile_registered(&registered).map_err(|err| {
                let reason = format!("writer schema id {id} is not a Protobuf schema: {err}");
                (RejectKind::Incompatible, reason)
            })?;
            if let Some(widened) = self.widened_by(&reader, &file) {
                *reader = Arc::new(widened);
            }
            Ok(writer_messages(&file, &reader.message))
        });
        self.writers.insert(id, writer);
    }

    /// The reader widened by the fields that `file`'s message of its name adds (scalars, and
    /// messages and enums the reader's files define; repeated or not; not maps), if it has any
    /// and every writer learned so far, and `file`, still read as it.
    fn widened_by(&self, reader: &Reader, file: &prost_reflect::FileDescriptor) -> Option<Reader> {
        let written = file
            .parent_pool()
            .get_message_by_name(reader.message.full_name())?;
        readable_as(&written, &reader.message, &mut HashSet::new()).ok()?;
        let taken = |field: &FieldDescriptor| {
            reader.message.get_field(field.number()).is_some()
                || reader.message.get_field_by_name(field.name()).is_some()
                || self.reserved.iter().any(|name| name == field.name())
        };
        let added: Vec<FieldDescriptor> = (written.fields())
            .filter(|field| defined_for(&reader.message, field) && !taken(field))
            .collect();
        if added.is_empty() {
            return None;
        }
        let message = with_fields_added(&reader.message, &added)?;
        let fields = fields_from_message(&message).ok()?;
        let own = reader.message.fields().len() - reader.added.len();
        // Every message that reads as the reader now (the learned writers' and this file's)
        // must read as the widened one.
        let learned = self.writers.read();
        let this_file = writer_messages(file, &reader.message);
        let reads_all = (learned
            .values()
            .filter_map(|messages| messages.as_ref().ok()))
        .chain([&this_file])
        .flat_map(|messages| messages.values().filter_map(|m| m.as_ref().ok()))
        .all(|writer| readable_as(writer, &message, &mut HashSet::new()).is_ok());
        reads_all.then(|| Reader {
            message,
            added: (fields[own..].iter())
                .map(|field| SchemaField {
                    required: false,
                    ..field.clone()
                })
                .collect(),
        })
    }

    /// Decodes the `records` that passed the size checks into columns of the stream's fields
    /// (then of the fields newer writers added); returns them with the records they hold, in
    /// input order. Records that cannot become rows go to `rejected`.
    pub(super) fn decode<'r>(
        &self,
        schema: &StreamSchema,
        records: &[&'r RawRecord<'r>],
        rejected: &mut Vec<Rejected>,
    ) -> Conformed<'r> {
        let reader = self.reader();
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
        drop(writers);
        let (decoded, kept) = self.decode_bodies(&reader.message, bodies, kept, rejected);
        conform(schema, &reader.added, decoded, kept, rejected)
    }

    /// Decodes message bodies in one pass; when that fails, finds the bodies that do not
    /// decode alone, rejects them, and decodes the others.
    fn decode_bodies<'r>(
        &self,
        message: &MessageDescriptor,
        bodies: Vec<&[u8]>,
        kept: Vec<&'r RawRecord<'r>>,
        rejected: &mut Vec<Rejected>,
    ) -> (RecordBatch, Vec<&'r RawRecord<'r>>) {
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

/// Compiles a registered schema with its references.
fn compile_registered(
    registered: &RegisteredSchema,
) -> Result<prost_reflect::FileDescriptor, String> {
    let mut files = ProtoFiles::default();
    for (name, schema) in &registered.references {
        files
            .add_registered(name, schema)
            .map_err(|err| format!("reference {name}: {err}"))?;
    }
    let root = files.add_registered("registered.proto", &registered.schema)?;
    files.compile(&root)
}

/// Each message of `file` (by its index path), checked against `reader`.
fn writer_messages(
    file: &prost_reflect::FileDescriptor,
    reader: &MessageDescriptor,
) -> WriterMessages {
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
        let readable = readable_as(&message, reader, &mut HashSet::new()).map(|()| message);
        messages.insert(path, readable);
    }
    messages
}

/// The message of a payload in the Confluent wire format, once its writer schema and message
/// are known to read as the reader.
fn framed_body<'p>(
    writers: &HashMap<u32, Result<WriterMessages, Refusal>>,
    payload: &'p [u8],
) -> Result<&'p [u8], Refusal> {
    let (id, messages) = writer_of(writers, payload)?;
    let (path, used) = message_indexes(&payload[HEADER..])?;
    match messages.get(&path) {
        Some(Ok(_)) => Ok(&payload[HEADER + used..]),
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
