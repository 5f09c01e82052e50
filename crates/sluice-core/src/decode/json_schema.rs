//! JSON Schema records in the Confluent wire format: each writer schema id is looked up in a
//! registry once and checked against the stream's fields ([`json_schema_readable`]). A newer
//! writer version's properties the stream lacks (an added optional property of a type a
//! stream field can have) become columns of their own beside the stream's
//! (`DecodedBatch::added`), null in the rows of writers that do not declare them. Each writer's
//! records are read with the stream's fields and the added ones *it* declares in the very type
//! of that column, so an undeclared or differently typed property of another writer's records
//! is skipped, as before, and never turns a good record into a dead letter.

use std::sync::{Arc, RwLock};

use super::RejectKind;
use super::confluent::{Refusal, RegisteredSchema, WriterSchemas, of_type};
use crate::schema::{SchemaField, StreamSchema, json_schema_optional_fields, json_schema_readable};

/// The writer schemas of a stream's JSON Schema records, and the fields they added.
#[derive(Debug, Default)]
pub struct JsonSchemaRecords {
    pub(super) writers: WriterSchemas<JsonWriter>,
    /// The fields newer writer versions added, in the order they were first seen; it only grows.
    added: RwLock<Arc<Vec<SchemaField>>>,
    /// Names an added field cannot take: the table's other columns (lineage, date/hour,
    /// derived).
    reserved: Vec<String>,
}

/// How one writer schema's records are read.
#[derive(Debug)]
pub(super) struct JsonWriter {
    /// The stream's fields, then the added fields this writer declares (readably).
    pub fields: Vec<SchemaField>,
    /// For each of those added fields, its place among all added fields.
    pub added_at: Vec<usize>,
}

impl JsonSchemaRecords {
    /// No writer learned yet; fields newer writers add are not taken under the `reserved`
    /// names.
    pub fn new(reserved: Vec<String>) -> Self {
        Self {
            reserved,
            ..Self::default()
        }
    }

    /// Every field added so far. A writer in [`Self::writers`] only names added fields
    /// that are in it.
    pub(super) fn added(&self) -> Arc<Vec<SchemaField>> {
        super::current(&self.added)
    }

    /// Learns writer schema `id` as the registry holds it, or why its records cannot be read
    /// as `stream`'s.
    pub fn learn(
        &self,
        stream: &StreamSchema,
        id: u32,
        registered: Result<RegisteredSchema, Refusal>,
    ) {
        let writer = registered.and_then(|registered| {
            of_type(id, &registered, "JSON", "JSON Schema")?;
            json_schema_readable(stream, &registered.schema).map_err(|err| {
                let reason =
                    format!("writer schema id {id} cannot be read as the stream's schema: {err}");
                (RejectKind::Incompatible, reason)
            })?;
            Ok(self.add_fields_of(stream, &registered.schema))
        });
        // After the added fields it names: a decoder that finds the writer finds them.
        self.writers.insert(id, writer);
    }

    /// How the records of the writer schema `writer` are read, adding its new properties to
    /// the added fields.
    fn add_fields_of(&self, stream: &StreamSchema, writer: &str) -> JsonWriter {
        // Held while it grows: two writers adding fields at once must not undo each other.
        // Never held while `writers` is locked (decoding takes `writers`, then this).
        let mut added = self.added.write().unwrap_or_else(|p| p.into_inner());
        let mut grown = (**added).clone();
        let mut reads = JsonWriter {
            fields: stream.fields().to_vec(),
            added_at: Vec::new(),
        };
        for field in json_schema_optional_fields(writer) {
            if stream.has_field(&field.name) || self.reserved.contains(&field.name) {
                continue;
            }
            // A column another writer added is read only from a property of its very type: a
            // wider one (a number for an integer column) could hold values the column cannot,
            // and those records would become dead letters.
            let at = match grown.iter().position(|known| known.name == field.name) {
                Some(at) if grown[at].ty == field.ty => at,
                Some(_) => continue,
                None => {
                    grown.push(field);
                    grown.len() - 1
                }
            };
            reads.fields.push(grown[at].clone());
            reads.added_at.push(at);
        }
        *added = Arc::new(grown);
        reads
    }
}
