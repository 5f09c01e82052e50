//! JSON Schema records in the Confluent wire format: each writer schema id is looked up in a
//! registry once and checked against the stream's fields ([`json_schema_readable`]). A newer
//! writer version's properties the stream lacks (an added optional property of a type a
//! stream field can have) become columns of their own beside the stream's
//! (`DecodedBatch::added`), null in the rows of writers that do not declare them. Each writer's
//! records are read with the stream's fields and the added ones *it* declares in a type that
//! field reads, so an undeclared or differently typed property of an older writer's records is
//! skipped, as before, and never turns a good record into a dead letter.

use std::sync::{Arc, RwLock};

use super::RejectKind;
use super::confluent::{Refusal, RegisteredSchema, WriterSchemas, of_type};
use crate::schema::{
    SchemaField, StreamSchema, json_schema_optional_fields, json_schema_readable, property_readable,
};

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
        self.added
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Learns writer schema `id` as the registry holds it, or why its records cannot be read
    /// as `stream`'s.
    pub fn learn(
        &self,
        stream: &StreamSchema,
        id: u32,
        registered: Result<RegisteredSchema, Refusal>,
    ) {
        // Held throughout: two writers adding fields at once must not undo each other.
        let mut added = self.added.write().unwrap_or_else(|p| p.into_inner());
        let writer = registered.and_then(|registered| {
            of_type(id, &registered, "JSON", "JSON Schema")?;
            json_schema_readable(stream, &registered.schema).map_err(|err| {
                let reason =
                    format!("writer schema id {id} cannot be read as the stream's schema: {err}");
                (RejectKind::Incompatible, reason)
            })?;
            let mut grown = (**added).clone();
            let mut writer = JsonWriter {
                fields: stream.fields().to_vec(),
                added_at: Vec::new(),
            };
            for (field, property) in json_schema_optional_fields(&registered.schema) {
                if stream.has_field(&field.name) || self.reserved.contains(&field.name) {
                    continue;
                }
                let at = match grown.iter().position(|known| known.name == field.name) {
                    Some(at) if property_readable(&grown[at], &property).is_ok() => at,
                    Some(_) => continue,
                    None => {
                        grown.push(field);
                        grown.len() - 1
                    }
                };
                writer.fields.push(grown[at].clone());
                writer.added_at.push(at);
            }
            *added = Arc::new(grown);
            Ok(writer)
        });
        self.writers.insert(id, writer);
    }
}
