//! Protobuf schemas as stream schemas: a message of a `.proto` file (compiled by protox, no
//! `protoc` needed) gives the stream's fields, with the Arrow types ptars-core decodes its
//! messages to, turned into types a Delta table holds. The same compiler reads the writer
//! schemas a Schema Registry holds, as `.proto` text or as a serialized `FileDescriptorProto`
//! (base64, what Confluent's serializers register), with their references.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::BinaryArray;
use arrow::datatypes::SchemaRef;
use base64::Engine;
use prost_reflect::{DescriptorPool, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use ptars_core::{EnumRepr, PtarsConfig, TimeUnit, binary_array_to_record_batch_direct};

use super::SchemaField;
use super::lake::field_type;

/// Where protobuf's own files (well-known types) are imported from: built into protox.
const GOOGLE_FILES: &str = "google/protobuf/";

/// How messages are decoded into Arrow: enums as their names, timestamps in microseconds UTC.
pub fn decoding() -> PtarsConfig {
    PtarsConfig::default()
        .with_enum_repr(EnumRepr::String)
        .with_timestamp_unit(TimeUnit::Microsecond)
        .with_timestamp_tz(Some("UTC"))
}

/// The Arrow schema ptars-core decodes messages of `message` to.
pub fn message_arrow_schema(message: &MessageDescriptor) -> SchemaRef {
    let none = BinaryArray::from_iter_values(std::iter::empty::<&[u8]>());
    binary_array_to_record_batch_direct(&none, message, &decoding())
        .expect("no messages decode")
        .schema()
}

/// The stream fields of a message, in the order of its fields; a field without presence (a
/// proto3 scalar, which reads as its default when unset) is required.
pub fn fields_from_message(message: &MessageDescriptor) -> Result<Vec<SchemaField>, String> {
    let decoded = message_arrow_schema(message);
    if decoded.fields().is_empty() {
        return Err(format!("message {} has no fields", message.full_name()));
    }
    decoded
        .fields()
        .iter()
        .map(|field| {
            let ty = field_type(field.data_type())
                .map_err(|err| format!("field {}: Protobuf type {err}", field.name()))?;
            Ok(SchemaField {
                name: field.name().clone(),
                ty,
                required: !field.is_nullable(),
            })
        })
        .collect()
}

/// The message named `name` (its full name, or its name when only one message has it) in
/// `file`'s pool; without a name, the file's only top-level message.
pub fn find_message(
    file: &FileDescriptor,
    name: Option<&str>,
) -> Result<MessageDescriptor, String> {
    let pool = file.parent_pool();
    match name {
        Some(name) => {
            if let Some(message) = pool.get_message_by_name(name) {
                return Ok(message);
            }
            let mut named = pool.all_messages().filter(|m| m.name() == name);
            match (named.next(), named.next()) {
                (Some(message), None) => Ok(message),
                (Some(_), Some(_)) => Err(format!(
                    "several messages are named {name}: give its full name (package.Message)"
                )),
                (None, _) => Err(format!(
                    "no message {name} in {}; it has {}",
                    file.name(),
                    message_names(file)
                )),
            }
        }
        None => {
            let mut top = file.messages();
            match (top.next(), top.next()) {
                (Some(message), None) => Ok(message),
                (None, _) => Err(format!("{} defines no message", file.name())),
                (Some(_), Some(_)) => Err(format!(
                    "{} defines several messages ({}): say which one records are with `message`",
                    file.name(),
                    message_names(file)
                )),
            }
        }
    }
}

fn message_names(file: &FileDescriptor) -> String {
    file.messages()
        .map(|m| m.full_name().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The path of `message` in its file (its message indexes in the Confluent wire format):
/// `[i]` for the file's i-th top-level message, then the index among each parent's nested
/// messages.
pub fn message_path(message: &MessageDescriptor) -> Vec<usize> {
    let siblings = |of: &MessageDescriptor| -> Vec<MessageDescriptor> {
        match of.parent_message() {
            Some(parent) => parent.child_messages().collect(),
            None => of.parent_file().messages().collect(),
        }
    };
    let mut path = Vec::new();
    let mut at = Some(message.clone());
    while let Some(current) = at {
        let index = siblings(&current)
            .iter()
            .position(|m| m.full_name() == current.full_name())
            .expect("a message is among its parent's");
        path.push(index);
        at = current.parent_message();
    }
    path.reverse();
    path
}

/// `reader` with `added` (fields of a newer writer's message of the same name, which `reader`
/// lacks) appended, as a message of a pool of its own: each keeps its number, name, type,
/// cardinality and presence, so that older messages read as protobuf reads them: null for a
/// single field with presence (proto3 `optional`, proto2, a message), the default (0, "", the
/// first enum value) for a proto3 plain scalar or enum, an empty list for a repeated field.
/// `None` when one of them is a map, or a message or enum whose definition `reader`'s pool
/// lacks (it would be the writer's), or the pool does not build.
pub fn with_fields_added(
    reader: &MessageDescriptor,
    added: &[FieldDescriptor],
) -> Option<MessageDescriptor> {
    use prost_reflect::prost_types::field_descriptor_proto::Label;
    use prost_reflect::prost_types::{FileDescriptorSet, OneofDescriptorProto};

    if !added.iter().all(|field| defined_for(reader, field)) {
        return None;
    }
    let mut files: Vec<_> = reader
        .parent_pool()
        .file_descriptor_protos()
        .cloned()
        .collect();
    let file = files
        .iter_mut()
        .find(|file| file.name() == reader.parent_file().name())?;
    let proto3 = file.syntax() == "proto3";
    let path = message_path(reader);
    let mut message = file.message_type.get_mut(path[0])?;
    for &index in &path[1..] {
        message = message.nested_type.get_mut(index)?;
    }
    for field in added {
        let mut proto = field.field_descriptor_proto().clone();
        proto.oneof_index = None;
        proto.proto3_optional = None;
        if !field.is_list() {
            proto.label = Some(Label::Optional as i32);
        }
        let synthetic = !matches!(field.kind(), Kind::Message(_)) && !field.is_list();
        if proto3 && synthetic && field.supports_presence() {
            // Presence in proto3: a synthetic oneof of its own, after every other oneof.
            message.oneof_decl.push(OneofDescriptorProto {
                name: Some(format!("_{}", field.name())),
                options: None,
            });
            proto.oneof_index = Some(message.oneof_decl.len() as i32 - 1);
            proto.proto3_optional = Some(true);
        }
        message.field.push(proto);
    }
    let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: files }).ok()?;
    pool.get_message_by_name(reader.full_name())
}

/// Whether `field` (a writer's) can be added to `reader`: not a map, and of a scalar type or of
/// a message or enum that `reader`'s pool defines under the same full name.
pub fn defined_for(reader: &MessageDescriptor, field: &FieldDescriptor) -> bool {
    let pool = reader.parent_pool();
    !field.is_map()
        && match field.kind() {
            Kind::Message(message) => pool.get_message_by_name(message.full_name()).is_some(),
            Kind::Enum(definition) => pool.get_enum_by_name(definition.full_name()).is_some(),
            _ => true,
        }
}

/// The text of `.proto` files and their imports, gathered before they are compiled.
#[derive(Debug, Default, Clone)]
pub struct ProtoFiles {
    files: HashMap<String, File>,
}

impl ProtoFiles {
    /// The `.proto` file at `path` and every file it imports, read by `read` (imports are
    /// looked up as written, then beside the file that imports them); protobuf's own files
    /// come with the compiler.
    pub fn read(
        path: &str,
        read: &dyn Fn(&str) -> std::io::Result<String>,
    ) -> Result<Self, String> {
        let mut files = Self::default();
        let mut pending = vec![(path.to_string(), path.to_string())];
        while let Some((name, importer)) = pending.pop() {
            if files.files.contains_key(&name) || name.starts_with(GOOGLE_FILES) {
                continue;
            }
            let beside = Path::new(&importer).with_file_name(&name);
            let text = read(&name)
                .or_else(|_| read(&beside.to_string_lossy()))
                .map_err(|err| format!("cannot read {name:?}: {err}"))?;
            let file = File::from_source(&name, &text).map_err(|err| format!("{name}: {err}"))?;
            for import in &file.file_descriptor_proto().dependency {
                pending.push((import.clone(), name.clone()));
            }
            files.files.insert(name, file);
        }
        Ok(files)
    }

    /// Adds a file as a Schema Registry holds it: `.proto` text, or a base64
    /// `FileDescriptorProto` (whose own name is kept); returns the name it is known by.
    pub fn add_registered(&mut self, name: &str, schema: &str) -> Result<String, String> {
        // `.proto` text is never base64 (it has spaces).
        let serialized = base64::engine::general_purpose::STANDARD.decode(schema.trim());
        let file = match serialized {
            Ok(bytes) => File::decode_file_descriptor_proto(&bytes[..])
                .map_err(|err| format!("not a serialized FileDescriptorProto: {err}"))?,
            Err(_) => File::from_source(name, schema).map_err(|err| err.to_string())?,
        };
        let name = match file.name() {
            "" => name.to_string(),
            own => own.to_string(),
        };
        self.files.insert(name.clone(), file);
        Ok(name)
    }

    /// Compiles `root` with the files it imports into a pool, and returns the root's
    /// descriptor.
    pub fn compile(self, root: &str) -> Result<FileDescriptor, String> {
        let mut resolver = ChainFileResolver::new();
        resolver.add(self);
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.open_file(root).map_err(|err| err.to_string())?;
        let pool: DescriptorPool = compiler.descriptor_pool();
        pool.get_file_by_name(root)
            .ok_or_else(|| format!("{root} was not compiled"))
    }
}

impl FileResolver for ProtoFiles {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| protox::Error::file_not_found(name))
    }
}

/// The stream's message from a `.proto` file: what records are read as.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// The message descriptor.
    pub message: MessageDescriptor,
    /// What its messages decode to.
    pub decoded: SchemaRef,
}

impl StreamMessage {
    /// Message `name` (or the only one) of the `.proto` file at `path`, read by `read`.
    pub fn read(
        path: &str,
        name: Option<&str>,
        read: &dyn Fn(&str) -> std::io::Result<String>,
    ) -> Result<(Self, Vec<SchemaField>), String> {
        let file = ProtoFiles::read(path, read)?.compile(path)?;
        let message = find_message(&file, name)?;
        let fields = fields_from_message(&message)?;
        let decoded = message_arrow_schema(&message);
        Ok((Self { message, decoded }, fields))
    }
}

#[cfg(test)]
pub(crate) mod tests;
