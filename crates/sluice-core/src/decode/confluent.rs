//! The Confluent wire format (a zero magic byte, a 4-byte big-endian schema id, then the
//! record in its schema's format), and what a stream knows of the writer schemas its records
//! name by id: learned from a Schema Registry before its records are decoded (the engine asks
//! for [`WriterSchemas::ids_to_learn`]), shared by every thread decoding the stream.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard};

use super::RejectKind;

/// Bytes before the record in the Confluent wire format: the magic byte and the schema id.
pub const HEADER: usize = 5;

/// How a stream's records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Confluent's wire format: magic byte, schema id, record.
    Confluent,
    /// The record alone, written with the stream's schema.
    Plain,
}

impl Framing {
    /// Records that name their schema in a registry are in the Confluent wire format.
    pub fn of<R>(registry: &Option<R>) -> Self {
        match registry {
            Some(_) => Self::Confluent,
            None => Self::Plain,
        }
    }

    /// The schema ids of `payloads` that `writers` has not learned (none for plain records).
    pub fn ids_to_learn<'a, T>(
        self,
        writers: &WriterSchemas<T>,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<u32> {
        match self {
            Self::Confluent => writers.ids_to_learn(payloads),
            Self::Plain => Vec::new(),
        }
    }
}

/// A schema as a Schema Registry holds it under an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// "AVRO", "JSON" or "PROTOBUF" (a registry leaves it out for Avro).
    pub schema_type: String,
    /// The schema's text.
    pub schema: String,
    /// The schemas it imports (Protobuf), each as (the name it is imported by, its text),
    /// with theirs: every file it needs but protobuf's own.
    pub references: Vec<(String, String)>,
}

/// Why a record cannot become a row: its kind, for counting, and the reason, for people.
pub type Refusal = (RejectKind, String);

/// The schema id of a payload in the Confluent wire format, or why it is not one.
pub fn schema_id(payload: &[u8]) -> Result<u32, Refusal> {
    let wire = |reason: String| (RejectKind::WireFormat, reason);
    match payload {
        [magic, ..] if *magic != 0 => Err(wire(format!(
            "magic byte 0x{magic:02x}, not 0: not in the Confluent wire format"
        ))),
        [_, id @ ..] if id.len() >= HEADER - 1 => {
            Ok(u32::from_be_bytes(id[..4].try_into().expect("four bytes")))
        }
        _ => Err(wire(format!(
            "{} bytes: shorter than the Confluent wire format's {HEADER}-byte header",
            payload.len()
        ))),
    }
}

/// The message indexes that follow the header of a Protobuf record in the Confluent wire
/// format (the path to its message type in the schema's file: `[0]` is the first top-level
/// message, `[1, 0]` the first message nested in the second), and how many bytes they take.
pub fn message_indexes(after_header: &[u8]) -> Result<(Vec<usize>, usize), Refusal> {
    let wire = |what: &str| {
        (
            RejectKind::WireFormat,
            format!("the Protobuf message indexes after the schema id are {what}"),
        )
    };
    let mut at = 0;
    let mut next = || -> Result<i64, Refusal> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *after_header.get(at).ok_or_else(|| wire("cut short"))?;
            at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // Zigzag, as Confluent's serializers write them.
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(wire("not varints"))
    };
    let count = next()?;
    if count == 0 {
        return Ok((vec![0], at));
    }
    if !(1..=64).contains(&count) {
        return Err(wire(&format!("{count} deep")));
    }
    let mut path = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = next()?;
        path.push(usize::try_from(index).map_err(|_| wire("negative"))?);
    }
    Ok((path, at))
}

/// The message indexes of `path` as the Confluent wire format writes them (`[0]` as one zero
/// byte; otherwise the count, then each index, zigzag varints).
pub fn encode_message_indexes(path: &[usize]) -> Vec<u8> {
    if path == [0] {
        return vec![0];
    }
    let mut out = Vec::new();
    let mut put = |value: i64| {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.push((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        out.push(zigzag as u8);
    };
    put(path.len() as i64);
    for &index in path {
        put(index as i64);
    }
    out
}

/// Per writer schema id: what records of it are read with (`T`), or why they cannot be.
#[derive(Debug)]
pub struct WriterSchemas<T> {
    known: RwLock<HashMap<u32, Result<T, Refusal>>>,
}

impl<T> Default for WriterSchemas<T> {
    fn default() -> Self {
        Self {
            known: RwLock::new(HashMap::new()),
        }
    }
}

impl<T> WriterSchemas<T> {
    /// The schema ids of `payloads` not learned yet, each once, in order of appearance.
    pub fn ids_to_learn<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        let known = self.read();
        let mut ids: Vec<u32> = Vec::new();
        for payload in payloads {
            if let Ok(id) = schema_id(payload)
                && !known.contains_key(&id)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// Records of `id` are read with `writer`, or refused.
    pub fn insert(&self, id: u32, writer: Result<T, Refusal>) {
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        known.insert(id, writer);
    }

    /// What is known, held for reading while a batch is decoded.
    pub fn read(&self) -> RwLockReadGuard<'_, HashMap<u32, Result<T, Refusal>>> {
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The id and what a payload's records are read with, from `known`, or why it cannot be read.
pub fn writer_of<'k, T>(
    known: &'k HashMap<u32, Result<T, Refusal>>,
    payload: &[u8],
) -> Result<(u32, &'k T), Refusal> {
    let id = schema_id(payload)?;
    match known.get(&id) {
        Some(Ok(writer)) => Ok((id, writer)),
        Some(Err(refusal)) => Err(refusal.clone()),
        None => Err((
            RejectKind::UnknownSchema,
            format!("schema id {id} was not learned from the registry"),
        )),
    }
}

/// Refuses a registered schema of another type than the stream reads.
pub fn of_type(
    id: u32,
    registered: &RegisteredSchema,
    expected: &str,
    format: &str,
) -> Result<(), Refusal> {
    if registered.schema_type == expected {
        Ok(())
    } else {
        Err((
            RejectKind::Incompatible,
            format!(
                "schema id {id} is a {} schema; the stream reads {format}",
                registered.schema_type
            ),
        ))
    }
}
