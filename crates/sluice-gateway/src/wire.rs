//! Records produced in the wire format their stream declares. A JSON record that passed the
//! stream's checks is sent as it is (`json`), behind the Confluent header of the stream's
//! schema id (`json_schema`), or encoded: read as the JSON form of the stream's Avro schema
//! or Protobuf message (arrow-json, into the Arrow layout the stream's decoder reads) and
//! written by arrow-avro or ptars-core, as a plain body or in the Confluent wire format. The
//! schema id is the id of the stream's own schema under the subject `{topic}-value`, looked up
//! (or registered) once when the gateway starts, as Confluent's serializers do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, DictionaryArray, Int32Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::json::ReaderBuilder;
use arrow_avro::schema::{
    AVRO_ENUM_SYMBOLS_METADATA_KEY, FingerprintStrategy, SCHEMA_METADATA_KEY,
};
use arrow_avro::writer::format::AvroSoeFormat;
use arrow_avro::writer::{Encoder, WriterBuilder};
use base64::Engine;
use prost_reflect::{Kind, MessageDescriptor};
use sluice_core::config::{Stream, StreamFormat};
use sluice_core::decode::confluent::{HEADER, encode_message_indexes};
use sluice_core::schema::protobuf::message_path;
use sluice_engine::registry::SchemaRegistry;

/// How one stream's records are produced.
pub enum WireFormat {
    /// JSON, as sent.
    Json,
    /// JSON behind the Confluent header of schema `id`.
    FramedJson {
        /// The stream's schema id.
        id: u32,
    },
    /// Avro bodies of the stream's schema (`decoded` carries it as metadata), behind the
    /// Confluent header of `id` when the stream has a registry.
    Avro {
        /// How records are read into the Arrow layout of the stream's Avro schema.
        form: JsonForm,
        /// The stream's schema id, if records carry one.
        id: Option<u32>,
        /// Built once (it parses the schema), drained after each record, and built again
        /// after an error (which may leave part of a row behind).
        encoder: Mutex<Encoder>,
    },
    /// Protobuf messages of the stream's message, behind the Confluent header of `id` and the
    /// message's indexes when the stream has a registry.
    Protobuf {
        /// The stream's message.
        message: MessageDescriptor,
        /// How records are read into its Arrow layout.
        form: JsonForm,
        /// The header of the stream's schema id and the message's indexes, if records carry
        /// them.
        header: Option<Vec<u8>>,
    },
}

impl WireFormat {
    /// The wire format of `stream`, with its schema id from its registry.
    pub async fn of_stream(stream: &Stream) -> Result<Self, String> {
        let id = match stream.format.registry() {
            Some(registry) => Some(schema_id(stream, registry).await?),
            None => None,
        };
        Ok(match &stream.format {
            StreamFormat::Json => Self::Json,
            StreamFormat::JsonSchema { .. } => Self::FramedJson {
                id: id.expect("json_schema streams have a registry"),
            },
            StreamFormat::Avro {
                schema, decoded, ..
            } => {
                let metadata =
                    HashMap::from([(SCHEMA_METADATA_KEY.to_string(), schema.to_string())]);
                let decoded = Arc::new(Schema::new_with_metadata(
                    decoded.fields().clone(),
                    metadata,
                ));
                let encoder = avro_encoder(&decoded, id)
                    .map_err(|err| format!("stream {}: {err}", stream.name))?;
                Self::Avro {
                    form: JsonForm::new(decoded),
                    id,
                    encoder: Mutex::new(encoder),
                }
            }
            StreamFormat::Protobuf { message, .. } => Self::Protobuf {
                message: message.message.clone(),
                form: JsonForm::new(message.decoded.clone()),
                header: id.map(|id| {
                    let indexes = encode_message_indexes(&message_path(&message.message));
                    [header(id).as_slice(), &indexes].concat()
                }),
            },
        })
    }

    /// The bytes to produce for a checked JSON record, or why it cannot be encoded.
    pub fn encode(&self, json: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Json => Ok(json.to_vec()),
            Self::FramedJson { id } => Ok([header(*id).as_slice(), json].concat()),
            Self::Avro { form, id, encoder } => {
                let row = form.row(json)?;
                let mut encoder = encoder.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(err) = encoder.encode(&row) {
                    *encoder = avro_encoder(&form.decoded, *id)?;
                    return Err(format!("cannot be written as Avro: {err}"));
                }
                let rows = encoder.flush();
                let framed = rows.row(0).map_err(|err| err.to_string())?;
                Ok(match id {
                    Some(_) => framed.to_vec(),
                    None => framed[HEADER..].to_vec(),
                })
            }
            Self::Protobuf {
                message,
                form,
                header,
            } => {
                let row = form.row(json)?;
                for (column, field) in row.columns().iter().zip(form.decoded.fields()) {
                    known_enum_names(column, message, field.name())?;
                }
                let bodies = BinaryArray::from(ptars_core::record_batch_to_array(&row, message));
                let header = header.as_deref().unwrap_or_default();
                Ok([header, bodies.value(0)].concat())
            }
        }
    }
}

/// Refuses an enum name the message's enum does not have in `column` (field `name` of
/// `message`, nested messages and lists alike): the encoder would leave the field out, and
/// the record would read as the enum's default.
fn known_enum_names(
    column: &ArrayRef,
    message: &MessageDescriptor,
    name: &str,
) -> Result<(), String> {
    let Some(field) = message.get_field_by_name(name) else {
        return Ok(());
    };
    let values = match column.data_type() {
        DataType::List(_) => column.as_list::<i32>().values().clone(),
        _ => column.clone(),
    };
    match field.kind() {
        Kind::Enum(symbols) => {
            for value in values.as_string::<i32>().iter().flatten() {
                if symbols.get_value_by_name(value).is_none() {
                    let names: Vec<String> =
                        symbols.values().map(|v| v.name().to_string()).collect();
                    return Err(format!("field {name}: {value:?} is not one of {names:?}"));
                }
            }
            Ok(())
        }
        Kind::Message(nested) if matches!(values.data_type(), DataType::Struct(_)) => {
            let values = values.as_struct();
            for (child, child_field) in values.columns().iter().zip(values.fields()) {
                known_enum_names(child, &nested, child_field.name())
                    .map_err(|err| format!("field {name}: {err}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The Confluent wire format's header for schema `id`.
fn header(id: u32) -> [u8; HEADER] {
    let id = id.to_be_bytes();
    [0, id[0], id[1], id[2], id[3]]
}

/// The id of the stream's schema under `{topic}-value` in its registry.
async fn schema_id(
    stream: &Stream,
    registry: &sluice_core::config::Registry,
) -> Result<u32, String> {
    let (schema_type, schema) = match &stream.format {
        StreamFormat::JsonSchema { .. } => ("JSON", stream.json_schema.to_string()),
        StreamFormat::Avro { schema, .. } => ("AVRO", schema.to_string()),
        StreamFormat::Protobuf { message, .. } => ("PROTOBUF", serialized(&message.message)?),
        StreamFormat::Json => unreachable!("a JSON stream names no registry"),
    };
    let subject = format!("{}-value", stream.topic);
    let client = SchemaRegistry::new(registry, &stream.format).map_err(|err| format!("{err:#}"))?;
    client
        .id_of(&subject, schema_type, &schema)
        .await
        .map_err(|err| format!("stream {}: {err:#}", stream.name))
}

/// The file of `message` as a registry holds it: a base64 `FileDescriptorProto`, as
/// Confluent's serializers register it. Files that import others than protobuf's own would need
/// references, which the gateway does not register.
fn serialized(message: &MessageDescriptor) -> Result<String, String> {
    let file = message.parent_file();
    if let Some(import) = file
        .dependencies()
        .find(|import| !import.name().starts_with("google/protobuf/"))
    {
        return Err(format!(
            "{} imports {}: the gateway registers .proto files that import only protobuf's own files",
            file.name(),
            import.name()
        ));
    }
    let bytes = prost_reflect::prost::Message::encode_to_vec(file.file_descriptor_proto());
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// An encoder of Avro records of `decoded` (which carries the Avro schema as metadata),
/// behind the Confluent header of `id` (of id 0, cut off, for plain bodies).
fn avro_encoder(decoded: &SchemaRef, id: Option<u32>) -> Result<Encoder, String> {
    WriterBuilder::new(decoded.as_ref().clone())
        .with_fingerprint_strategy(FingerprintStrategy::Id(id.unwrap_or_default()))
        .build_encoder::<AvroSoeFormat>()
        .map_err(|err| format!("cannot write Avro records of the stream's schema: {err}"))
}

/// The JSON form of a stream's schema: the layout arrow-json reads a record as (enums as
/// text), and the Arrow layout the stream's decoder reads, which it is cast to.
pub struct JsonForm {
    decoded: SchemaRef,
    readable: SchemaRef,
}

impl JsonForm {
    fn new(decoded: SchemaRef) -> Self {
        let readable: Vec<Field> = decoded
            .fields()
            .iter()
            .map(|field| {
                field
                    .as_ref()
                    .clone()
                    .with_data_type(readable(field.data_type()))
            })
            .collect();
        Self {
            decoded,
            readable: Arc::new(Schema::new(readable)),
        }
    }

    /// One JSON record as a row of the decoded layout.
    fn row(&self, json: &[u8]) -> Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(self.readable.clone())
            .with_batch_size(1)
            .build_decoder()
            .map_err(|err| err.to_string())?;
        decoder
            .decode(json)
            .map_err(|err| format!("does not fit the stream's schema: {err}"))?;
        let read = decoder
            .flush()
            .map_err(|err| format!("does not fit the stream's schema: {err}"))?
            .filter(|batch| batch.num_rows() == 1)
            .ok_or("expected one JSON object")?;
        let columns = read
            .columns()
            .iter()
            .zip(self.decoded.fields())
            .map(|(column, field)| {
                as_decoded(column, field).map_err(|err| format!("field {}: {err}", field.name()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.decoded.clone(), columns)
            .map_err(|err| format!("does not fit the stream's schema: {err}"))
    }
}

/// A column read in [`readable`] types as `field`'s: an Avro enum's names as indexes into all
/// its symbols (what arrow-avro writes from), nested columns alike, the rest cast.
fn as_decoded(column: &ArrayRef, field: &Field) -> Result<ArrayRef, String> {
    match (field.data_type(), column.data_type()) {
        (DataType::Dictionary(..), _) => enum_symbols(column, field),
        (DataType::Struct(fields), DataType::Struct(_)) => {
            let read = column.as_struct();
            let children = read
                .columns()
                .iter()
                .zip(fields)
                .map(|(child, field)| {
                    as_decoded(child, field).map_err(|err| format!("{}: {err}", field.name()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let array = StructArray::try_new(fields.clone(), children, read.nulls().cloned())
                .map_err(|err| err.to_string())?;
            Ok(Arc::new(array))
        }
        (DataType::List(item), DataType::List(_)) => {
            let read = column.as_list::<i32>();
            let values = as_decoded(read.values(), item)?;
            let array = ListArray::try_new(
                item.clone(),
                read.offsets().clone(),
                values,
                read.nulls().cloned(),
            )
            .map_err(|err| err.to_string())?;
            Ok(Arc::new(array))
        }
        (ty, _) => cast(column, ty).map_err(|err| err.to_string()),
    }
}

/// Text values of an Avro enum as a dictionary of all its symbols, in their order.
fn enum_symbols(column: &ArrayRef, field: &Field) -> Result<ArrayRef, String> {
    let symbols: Vec<String> = field
        .metadata()
        .get(AVRO_ENUM_SYMBOLS_METADATA_KEY)
        .and_then(|symbols| serde_json::from_str(symbols).ok())
        .ok_or("an enum without its symbols")?;
    let names = cast(column, &DataType::Utf8).map_err(|err| err.to_string())?;
    let keys = names
        .as_string::<i32>()
        .iter()
        .map(|name| {
            name.map(|name| {
                symbols
                    .iter()
                    .position(|symbol| symbol == name)
                    .map(|index| index as i32)
                    .ok_or_else(|| format!("{name:?} is not one of {symbols:?}"))
            })
            .transpose()
        })
        .collect::<Result<Int32Array, String>>()?;
    let values = Arc::new(StringArray::from(symbols)) as ArrayRef;
    let array = DictionaryArray::<Int32Type>::try_new(keys, values).map_err(|e| e.to_string())?;
    Ok(Arc::new(array))
}

/// The type arrow-json reads a value of `ty` as: dictionaries (Avro enums) as their values.
fn readable(ty: &DataType) -> DataType {
    let field =
        |f: &Arc<Field>| Arc::new(f.as_ref().clone().with_data_type(readable(f.data_type())));
    match ty {
        DataType::Dictionary(_, values) => readable(values),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        DataType::List(item) => DataType::List(field(item)),
        DataType::Map(entries, sorted) => DataType::Map(field(entries), *sorted),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
