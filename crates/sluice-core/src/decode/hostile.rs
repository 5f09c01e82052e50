//! Generated hostile input for the decoder: random bytes, valid records with bytes flipped,
//! cut, inserted or deleted, and random JSON of every shape. Whatever comes, decoding does not
//! panic, every record is either a row or a refusal with a reason, and rows keep their
//! records' offsets in order.

use std::collections::BTreeSet;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::schema::{FieldType, SchemaField};

/// A record with a field of every type, the one the mutations start from.
const GOOD: &str = r#"{"device_id":"d1","ts":"2026-11-22T10:15:00.250Z","temperature_c":21.5,"ok":true,"n":42,"day":"2026-11-22"}"#;

fn decoder() -> Decoder {
    let field = |name: &str, ty, required| SchemaField {
        name: name.into(),
        ty,
        required,
    };
    let fields = vec![
        field("device_id", FieldType::String, true),
        field("ts", FieldType::Timestamp, true),
        field("temperature_c", FieldType::Float64, false),
        field("ok", FieldType::Boolean, false),
        field("n", FieldType::Int64, false),
        field("day", FieldType::Date, false),
    ];
    Decoder::new(Arc::new(StreamSchema::new(fields, "ts").unwrap()), 512)
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Cut(usize),
}

fn mutated(mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = GOOD.as_bytes().to_vec();
    for mutation in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *mutation {
            Mutation::Set(i, b) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes[i] = b;
            }
            Mutation::Insert(i, b) => bytes.insert(at(i, bytes.len() + 1), b),
            Mutation::Delete(i) if !bytes.is_empty() => {
                bytes.remove(at(i, bytes.len()));
            }
            Mutation::Cut(i) => bytes.truncate(at(i, bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<usize>(),
            prop::sample::select(b"{}[]\",:\\0-9e.tfn \x00\xff".to_vec())
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Cut),
    ]
}

/// Random JSON of any shape, with the schema's field names often among the keys.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(Value::String("2026-02-30T25:61:00Z".into())),
        Just(Value::String("2026-11-22".into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(vec!["device_id", "ts", "temperature_c", "ok", "n", "day"])
                .prop_map(str::to_string),
            "[a-z]{1,4}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn payload() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        prop::collection::vec(mutation(), 0..6).prop_map(|m| Some(mutated(&m))),
        prop::collection::vec(any::<u8>(), 0..700).prop_map(Some),
        json().prop_map(|v| Some(v.to_string().into_bytes())),
        Just(None),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_record_is_a_row_or_a_refusal_with_a_reason(
        payloads in prop::collection::vec(payload(), 1..12)
    ) {
        let records: Vec<RawRecord<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| RawRecord {
                payload: payload.as_deref(),
                partition: 2,
                offset: 1000 + i as i64,
            })
            .collect();
        let out = decoder().decode("hostile", &records, 0);
        prop_assert_eq!(out.batch.num_rows() + out.rejected.len(), records.len());
        let refused: BTreeSet<i64> = out.rejected.iter().map(|r| r.offset).collect();
        prop_assert_eq!(refused.len(), out.rejected.len(), "one refusal per record");
        for rejected in &out.rejected {
            prop_assert_eq!(rejected.partition, 2);
            prop_assert!(!rejected.reason.trim().is_empty(), "{:?}", rejected);
        }
        let kept: Vec<i64> = records
            .iter()
            .map(|r| r.offset)
            .filter(|offset| !refused.contains(offset))
            .collect();
        let offsets = out.batch.column_by_name(crate::schema::OFFSET_COLUMN).unwrap();
        let offsets: Vec<i64> = offsets.as_primitive::<Int64Type>().values().to_vec();
        prop_assert_eq!(offsets, kept);
    }
}

#[test]
fn the_unmutated_record_is_a_row() {
    let records = [RawRecord {
        payload: Some(GOOD.as_bytes()),
        partition: 0,
        offset: 0,
    }];
    let out = decoder().decode("hostile", &records, 0);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(out.batch.num_rows(), 1);
}
