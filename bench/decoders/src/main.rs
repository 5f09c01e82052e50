//! JSON → Arrow decoders side by side on sensor NDJSON, in batches of 8,192 lines:
//! - `arrow-json`: arrow-json's tape decoder (what sluice used before `row.rs`);
//! - `serde_json`: one typed serde visitor appending to Arrow builders, the payload checked as
//!   UTF-8 once and then read as `&str` (what `sluice-core/src/decode/row.rs` does);
//! - `sonic-rs`: the same visitor driven by sonic-rs.
//!
//! Rounds alternate the contenders; prints the median ns per event, MB/s and the ratio to
//! arrow-json. Every contender's columns are checked equal to arrow-json's (event time to the
//! millisecond, which is all arrow-json keeps).
//!
//!     cargo run --release --manifest-path bench/decoders/Cargo.toml -- FILE [LINES] [ROUNDS]

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, AsArray, Float64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use arrow::json::ReaderBuilder;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

const BATCH: usize = 8192;

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Float,
    Time,
}

/// The sensor workload's fields (bench/gen_sensor.py).
const FIELDS: [(&str, Kind); 7] = [
    ("device_id", Kind::Text),
    ("ts", Kind::Time),
    ("temperature_c", Kind::Float),
    ("vibration_g", Kind::Float),
    ("status", Kind::Text),
    ("site", Kind::Text),
    ("line", Kind::Text),
];

enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Float(f64),
    Micros(i64),
}

struct FieldIndex;

impl<'a> DeserializeSeed<'a> for FieldIndex {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldIndex {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(FIELDS.iter().position(|(field, _)| *field == name))
    }
}

struct CellSeed(Kind);

impl<'a> DeserializeSeed<'a> for CellSeed {
    type Value = Cell<'a>;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for CellSeed {
    type Value = Cell<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the field's type")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
    fn visit_borrowed_str<E: de::Error>(self, value: &'a str) -> Result<Self::Value, E> {
        match self.0 {
            Kind::Text => Ok(Cell::Text(Cow::Borrowed(value))),
            _ => self.visit_str(value),
        }
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        match self.0 {
            Kind::Text => Ok(Cell::Text(Cow::Owned(value.to_owned()))),
            Kind::Time => string_to_datetime(&chrono::Utc, value)
                .map(|time| Cell::Micros(time.timestamp_micros()))
                .map_err(E::custom),
            Kind::Float => Err(E::custom("a string for a number")),
        }
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        match self.0 {
            Kind::Float => Ok(Cell::Float(value)),
            _ => Err(E::custom("a number")),
        }
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        self.visit_i64(value as i64)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        match self.0 {
            Kind::Float => Ok(Cell::Float(value as f64)),
            Kind::Time => Ok(Cell::Micros(value * 1000)),
            Kind::Text => Err(E::custom("a number for a string")),
        }
    }
}

struct RowSeed<'c, 'a>(&'c mut Vec<Cell<'a>>);

impl<'a> DeserializeSeed<'a> for RowSeed<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for RowSeed<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<M: MapAccess<'a>>(self, mut map: M) -> Result<(), M::Error> {
        self.0.clear();
        self.0.resize_with(FIELDS.len(), || Cell::Null);
        while let Some(index) = map.next_key_seed(FieldIndex)? {
            match index {
                Some(index) => self.0[index] = map.next_value_seed(CellSeed(FIELDS[index].1))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

enum Column {
    Text(StringBuilder),
    Float(Float64Builder),
    Time(TimestampMicrosecondBuilder),
}

/// Reads each line into cells with `read`, then appends them to the columns.
fn typed<'a>(
    lines: &[&'a [u8]],
    read: impl Fn(&'a [u8], &mut Vec<Cell<'a>>) -> Result<(), String>,
) -> RecordBatch {
    let mut columns: Vec<Column> = FIELDS
        .iter()
        .map(|(_, kind)| match kind {
            Kind::Text => Column::Text(StringBuilder::with_capacity(lines.len(), lines.len() * 16)),
            Kind::Float => Column::Float(Float64Builder::with_capacity(lines.len())),
            Kind::Time => Column::Time(TimestampMicrosecondBuilder::with_capacity(lines.len())),
        })
        .collect();
    let mut cells = Vec::new();
    for line in lines {
        if let Err(err) = read(line, &mut cells) {
            panic!("{err}: {}", String::from_utf8_lossy(line));
        }
        for (column, cell) in columns.iter_mut().zip(cells.drain(..)) {
            match (column, cell) {
                (Column::Text(b), Cell::Text(text)) => b.append_value(text),
                (Column::Float(b), Cell::Float(value)) => b.append_value(value),
                (Column::Time(b), Cell::Micros(value)) => b.append_value(value),
                (Column::Text(b), _) => b.append_null(),
                (Column::Float(b), _) => b.append_null(),
                (Column::Time(b), _) => b.append_null(),
            }
        }
    }
    let arrays = columns.into_iter().map(|column| match column {
        Column::Text(mut b) => Arc::new(b.finish()) as ArrayRef,
        Column::Float(mut b) => Arc::new(b.finish()),
        Column::Time(mut b) => Arc::new(b.finish()),
    });
    RecordBatch::try_from_iter(FIELDS.iter().map(|(name, _)| *name).zip(arrays)).unwrap()
}

fn serde_json_rows<'a>(line: &'a [u8], cells: &mut Vec<Cell<'a>>) -> Result<(), String> {
    let text = std::str::from_utf8(line).map_err(|err| err.to_string())?;
    let mut json = serde_json::Deserializer::from_str(text);
    RowSeed(cells)
        .deserialize(&mut json)
        .map_err(|err| err.to_string())?;
    json.end().map_err(|err| err.to_string())
}

fn sonic_rows<'a>(line: &'a [u8], cells: &mut Vec<Cell<'a>>) -> Result<(), String> {
    let mut json = sonic_rs::Deserializer::from_slice(line);
    RowSeed(cells)
        .deserialize(&mut json)
        .map_err(|err| err.to_string())?;
    json.end().map_err(|err| err.to_string())
}

fn arrow_json(lines: &[&[u8]], schema: &Arc<Schema>) -> RecordBatch {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(lines.len() + 1)
        .build_decoder()
        .unwrap();
    for line in lines {
        decoder.decode(line).unwrap();
    }
    decoder.flush().unwrap().unwrap()
}

/// `typed`'s batch with event time cut to milliseconds, as arrow-json decodes it.
fn same_as_arrow_json(typed: &RecordBatch, arrow: &RecordBatch) -> bool {
    let millis = arrow.column(1).as_primitive::<TimestampMillisecondType>();
    let micros = typed
        .column(1)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let times_match = millis
        .values()
        .iter()
        .zip(micros.values())
        .all(|(ms, us)| *ms == us.div_euclid(1000));
    times_match
        && (0..FIELDS.len())
            .filter(|i| *i != 1)
            .all(|i| typed.column(i) == arrow.column(i))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: decoders FILE [LINES] [ROUNDS]");
    let limit: usize = args.next().map_or(300_000, |n| n.parse().unwrap());
    let rounds: usize = args.next().map_or(15, |n| n.parse().unwrap());
    let data = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(limit)
        .collect();
    let bytes: usize = lines.iter().map(|line| line.len()).sum();
    let millis = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(
        FIELDS
            .iter()
            .map(|(name, kind)| match kind {
                Kind::Text => Field::new(*name, DataType::Utf8, true),
                Kind::Float => Field::new(*name, DataType::Float64, true),
                Kind::Time => Field::new(*name, millis.clone(), true),
            })
            .collect::<Vec<_>>(),
    ));
    for chunk in lines.chunks(BATCH) {
        let arrow = arrow_json(chunk, &schema);
        assert!(
            same_as_arrow_json(&typed(chunk, serde_json_rows), &arrow),
            "serde_json differs"
        );
        assert!(
            same_as_arrow_json(&typed(chunk, sonic_rows), &arrow),
            "sonic-rs differs"
        );
    }
    let names = ["arrow-json", "serde_json", "sonic-rs"];
    let mut nanos: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        for (contender, times) in nanos.iter_mut().enumerate() {
            let start = Instant::now();
            let mut rows = 0;
            for chunk in lines.chunks(BATCH) {
                rows += match contender {
                    0 => arrow_json(chunk, &schema),
                    1 => typed(chunk, serde_json_rows),
                    _ => typed(chunk, sonic_rows),
                }
                .num_rows();
            }
            assert_eq!(rows, lines.len());
            times.push(start.elapsed().as_nanos() as f64 / rows as f64);
        }
    }
    let medians: Vec<f64> = nanos
        .iter_mut()
        .map(|times| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        })
        .collect();
    println!(
        "{} lines ({} bytes each on average), {rounds} rounds, medians:",
        lines.len(),
        bytes / lines.len()
    );
    println!("| decoder | ns per event | MB/s | speed vs arrow-json |\n|---|---|---|---|");
    for (name, median) in names.iter().zip(&medians) {
        let mb_per_s = bytes as f64 / lines.len() as f64 / median * 1e3;
        println!(
            "| {name} | {median:.0} | {mb_per_s:.0} | {:.2}× |",
            medians[0] / median
        );
    }
}
