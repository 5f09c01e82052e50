//! How fast a stream's records decode into Arrow rows: JSON against Avro and Protobuf in the
//! Confluent wire format, on the same records (BENCHMARKS.md; run by
//! `bench/run.py --only decode`).
//!
//!     decode_speed NDJSON_FILE JSON_SCHEMA_FILE [RECORDS] [RUNS]
//!
//! Reads the first RECORDS lines (default 1,000,000) of a JSON-lines file of the stream whose
//! JSON Schema is given, decodes them as sluice's JSON decoder does, writes the decoded fields
//! as Avro records in the Confluent wire format (arrow-avro's encoder, schema id 1, the Avro
//! schema derived from the fields) and as Protobuf messages of [`SENSOR_PROTO`] in it
//! (ptars-core's encoder, schema id 1, message index [0]), checks that decoding those gives the
//! same columns, then times the three decoders, taking turns, RUNS times (default 5) over the
//! records in batches of `DECODE_BATCH_RECORDS`, on this one thread: events per second here
//! are events per CPU-second. Prints one JSON object with the medians.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use arrow::array::{BinaryArray, RecordBatch};
use arrow_avro::schema::{AvroSchema, FingerprintStrategy};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::AvroSoeFormat;
use ptars_core::record_batch_to_array;
use sluice_core::config::Stream;
use sluice_core::config::StreamFormat;
use sluice_core::config::defaults::DECODE_BATCH_RECORDS;
use sluice_core::decode::confluent::RegisteredSchema;
use sluice_core::schema::RESERVED_COLUMNS;
use sluice_core::{Decoder, Pipeline, RawRecord};

const PIPELINE: &str = r#"
[kafka]
group = "decode-speed"
[[streams]]
name = "json"
topic = "json"
schema = "stream.schema.json"
event_time = "ts"
[[streams]]
name = "avro"
topic = "avro"
format = "avro"
schema = "stream.avsc"
registry = { url = "http://127.0.0.1:1" }
event_time = "ts"
[[streams]]
name = "protobuf"
topic = "protobuf"
format = "protobuf"
schema = "stream.proto"
registry = { url = "http://127.0.0.1:1" }
event_time = "ts"
[[tables]]
name = "json"
from = "json"
uri = "/unused/json"
[[tables]]
name = "avro"
from = "avro"
uri = "/unused/avro"
[[tables]]
name = "protobuf"
from = "protobuf"
uri = "/unused/protobuf"
"#;

/// The sensor records as Protobuf messages: the JSON Schema's fields, the optional ones with
/// presence.
const SENSOR_PROTO: &str = r#"
syntax = "proto3";
import "google/protobuf/timestamp.proto";
message SensorEvent {
  string device_id = 1;
  google.protobuf.Timestamp ts = 2;
  optional double temperature_c = 3;
  optional double vibration_g = 4;
  optional string status = 5;
  optional string site = 6;
  optional string line = 7;
}
"#;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, lines, json_schema, rest @ ..] = args.as_slice() else {
        return Err("usage: decode_speed NDJSON_FILE JSON_SCHEMA_FILE [RECORDS] [RUNS]".into());
    };
    let records: usize = rest.first().map_or(Ok(1_000_000), |n| n.parse())?;
    let runs: usize = rest.get(1).map_or(Ok(5), |n| n.parse())?;
    let text = std::fs::read_to_string(lines)?;
    let json: Vec<&[u8]> = text.lines().take(records).map(str::as_bytes).collect();
    let json_schema = std::fs::read_to_string(json_schema)?;

    let json_decoder = decoder_of(&json_schema, None, "json")?;
    let fields = stream_fields(&decode_all(&json_decoder, &json), &json_decoder);
    let writer_schema = AvroSchema::try_from(fields[0].schema().as_ref())?;
    let avro = avro_records(&fields)?;
    let avro: Vec<&[u8]> = avro.iter().map(Vec::as_slice).collect();
    let avro_decoder = decoder_of(&json_schema, Some(&writer_schema.json_string), "avro")?;
    let registered = RegisteredSchema {
        schema_type: "AVRO".into(),
        schema: writer_schema.json_string.clone(),
        references: Vec::new(),
    };
    avro_decoder.learn(1, Ok(registered));
    let again = stream_fields(&decode_all(&avro_decoder, &avro), &avro_decoder);
    if again != fields {
        return Err("the Avro records did not decode to the JSON records' columns".into());
    }
    let pipeline = pipeline(&json_schema, None)?;
    let protobuf_stream = pipeline.stream("protobuf").expect("in the pipeline");
    let protobuf_decoder = Decoder::of_stream(protobuf_stream);
    let registered = RegisteredSchema {
        schema_type: "PROTOBUF".into(),
        schema: SENSOR_PROTO.into(),
        references: Vec::new(),
    };
    protobuf_decoder.learn(1, Ok(registered));
    let protobuf = protobuf_records(&fields, protobuf_stream);
    let protobuf: Vec<&[u8]> = protobuf.iter().map(Vec::as_slice).collect();
    let again = stream_fields(&decode_all(&protobuf_decoder, &protobuf), &protobuf_decoder);
    if !same_columns(&again, &fields) {
        return Err("the Protobuf records did not decode to the JSON records' columns".into());
    }

    // The decoders take turns within each run, so a slow spell of the machine falls on all
    // three alike rather than on whichever was being timed.
    let contenders: [(&Decoder, &[&[u8]]); 3] = [
        (&json_decoder, &json),
        (&avro_decoder, &avro),
        (&protobuf_decoder, &protobuf),
    ];
    let mut seconds = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..runs {
        for ((decoder, payloads), taken) in contenders.iter().zip(&mut seconds) {
            let started = Instant::now();
            std::hint::black_box(decode_all(decoder, payloads));
            taken.push(started.elapsed().as_secs_f64());
        }
    }
    let [json_s, avro_s, protobuf_s] = seconds.map(|mut taken| {
        taken.sort_by(f64::total_cmp);
        taken[runs / 2]
    });
    let mean_bytes = |p: &[&[u8]]| p.iter().map(|r| r.len()).sum::<usize>() as f64 / p.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "records": json.len(),
            "runs": runs,
            "json_seconds": json_s,
            "avro_seconds": avro_s,
            "json_events_per_cpu_s": json.len() as f64 / json_s,
            "avro_events_per_cpu_s": json.len() as f64 / avro_s,
            "avro_over_json": json_s / avro_s,
            "protobuf_seconds": protobuf_s,
            "protobuf_events_per_cpu_s": json.len() as f64 / protobuf_s,
            "protobuf_over_json": json_s / protobuf_s,
            "json_bytes_per_record": mean_bytes(&json),
            "avro_bytes_per_record": mean_bytes(&avro),
            "protobuf_bytes_per_record": mean_bytes(&protobuf),
        })
    );
    Ok(())
}

/// The decoder of stream `name` of [`PIPELINE`], with the given schema files.
fn decoder_of(
    json_schema: &str,
    avro_schema: Option<&str>,
    name: &str,
) -> Result<Decoder, Box<dyn Error>> {
    let pipeline = pipeline(json_schema, avro_schema)?;
    Ok(Decoder::of_stream(
        pipeline.stream(name).expect("in the pipeline"),
    ))
}

/// [`PIPELINE`] with the given schema files (an Avro schema that is not used without one).
fn pipeline(json_schema: &str, avro_schema: Option<&str>) -> Result<Pipeline, Box<dyn Error>> {
    let avro_schema = avro_schema.unwrap_or(
        r#"{"type": "record", "name": "Unused", "fields": [{"name": "ts", "type": "long"}]}"#,
    );
    let pipeline = Pipeline::parse(Path::new("decode_speed.toml"), PIPELINE, |file| {
        Ok(match file {
            "stream.schema.json" => json_schema.to_string(),
            "stream.proto" => SENSOR_PROTO.to_string(),
            _ => avro_schema.to_string(),
        })
    })?;
    Ok(pipeline)
}

/// Every payload decoded, in batches as the stream decodes them.
fn decode_all(decoder: &Decoder, payloads: &[&[u8]]) -> Vec<RecordBatch> {
    payloads
        .chunks(DECODE_BATCH_RECORDS)
        .map(|chunk| {
            let records: Vec<RawRecord<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(offset, payload)| RawRecord {
                    payload: Some(payload),
                    partition: 0,
                    offset: offset as i64,
                })
                .collect();
            let decoded = decoder.decode("bench", &records, 0);
            assert!(decoded.rejected.is_empty(), "{:?}", &decoded.rejected[..1]);
            decoded.batch
        })
        .collect()
}

/// The stream's own fields of decoded rows (no lineage or date/hour columns).
fn stream_fields(batches: &[RecordBatch], decoder: &Decoder) -> Vec<RecordBatch> {
    let fields = decoder.table_schema().fields().len() - RESERVED_COLUMNS.len();
    let columns: Vec<usize> = (0..fields).collect();
    batches
        .iter()
        .map(|batch| batch.project(&columns).expect("the stream's fields"))
        .collect()
}

/// The rows as Avro records in the Confluent wire format, schema id 1.
fn avro_records(batches: &[RecordBatch]) -> Result<Vec<Vec<u8>>, Box<dyn Error>> {
    let mut encoder = WriterBuilder::new(batches[0].schema().as_ref().clone())
        .with_fingerprint_strategy(FingerprintStrategy::Id(1))
        .build_encoder::<AvroSoeFormat>()?;
    encoder.encode_batches(batches)?;
    Ok(encoder.flush().iter().map(|row| row.to_vec()).collect())
}

/// The rows as Protobuf messages of `stream`'s message in the Confluent wire format: schema
/// id 1, message index [0].
fn protobuf_records(batches: &[RecordBatch], stream: &Stream) -> Vec<Vec<u8>> {
    let StreamFormat::Protobuf { message, .. } = &stream.format else {
        panic!("a Protobuf stream");
    };
    let mut out = Vec::new();
    for batch in batches {
        let messages = BinaryArray::from(record_batch_to_array(batch, &message.message));
        for body in messages.iter().flatten() {
            let mut framed = vec![0, 0, 0, 0, 1, 0];
            framed.extend_from_slice(body);
            out.push(framed);
        }
    }
    out
}

/// Whether the decoded columns equal (the fields' nullability may differ by format).
fn same_columns(a: &[RecordBatch], b: &[RecordBatch]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.columns() == b.columns())
}
