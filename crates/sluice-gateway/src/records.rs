//! Record checks of one stream: size, nesting depth, JSON syntax and the stream's JSON Schema
//! (the jsonschema crate, formats such as `date-time` checked), and the Kafka key taken from the
//! stream's key field. A record that passes is produced in the stream's wire format
//! ([`WireFormat`]): a JSON stream's exactly as it was sent.

use bytes::Bytes;
use serde_json::Value;
use sluice_core::config::Stream;
use sluice_core::decode::json_depth;

use crate::Record;
use crate::wire::WireFormat;

/// Checks the records of one stream.
pub struct StreamChecks {
    topic: String,
    key: Option<String>,
    max_record_size: usize,
    max_depth: usize,
    validator: jsonschema::Validator,
    wire: WireFormat,
}

/// The most schema violations one rejected record lists.
const ERRORS_SHOWN: usize = 3;

impl StreamChecks {
    /// Compiles the stream's JSON Schema; its records are produced in `wire`.
    pub fn new(stream: &Stream, max_depth: usize, wire: WireFormat) -> Result<Self, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&stream.json_schema)
            .map_err(|err| {
                format!(
                    "stream {}: its JSON Schema does not compile: {err}",
                    stream.name
                )
            })?;
        Ok(Self {
            topic: stream.topic.clone(),
            key: stream.key.clone(),
            max_record_size: stream.max_record_size,
            max_depth,
            validator,
            wire,
        })
    }

    /// The topic the stream's records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The record to produce, or why the text is refused.
    pub fn check(&self, text: Bytes) -> Result<Record, String> {
        if text.len() > self.max_record_size {
            return Err(format!(
                "the record is {} bytes, more than the stream's max_record_size of {}",
                text.len(),
                self.max_record_size
            ));
        }
        let depth = json_depth(&text);
        if depth > self.max_depth {
            return Err(format!(
                "the record nests {depth} levels deep, more than the limit of {}",
                self.max_depth
            ));
        }
        let value: Value =
            serde_json::from_slice(&text).map_err(|err| format!("not valid JSON: {err}"))?;
        let violations: Vec<String> = self
            .validator
            .iter_errors(&value)
            .take(ERRORS_SHOWN)
            .map(|err| {
                let at = err.instance_path().to_string();
                if at.is_empty() {
                    err.to_string()
                } else {
                    format!("{at}: {err}")
                }
            })
            .collect();
        if !violations.is_empty() {
            return Err(format!(
                "does not match the stream's schema: {}",
                violations.join("; ")
            ));
        }
        let key = self.key.as_ref().and_then(|field| match value.get(field) {
            Some(Value::String(text)) => Some(text.as_bytes().to_vec()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string().into_bytes()),
        });
        let value = self.wire.encode(&text)?;
        Ok(Record { key, value })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use sluice_core::Pipeline;

    use super::*;

    /// Checks of a sensor stream: `device_id` and `ts` required, at most 200 bytes, 4 levels.
    pub(crate) fn checks() -> StreamChecks {
        let pipeline = Pipeline::parse(
            Path::new("test.toml"),
            r#"
            [kafka]
            group = "g"
            [[streams]]
            name = "s"
            topic = "t"
            schema = "s.json"
            event_time = "ts"
            key = "device_id"
            max_record_size = "200B"
            [[tables]]
            name = "s"
            from = "s"
            uri = "/tmp/s"
            "#,
            |_| {
                Ok(r#"{"type": "object", "required": ["device_id", "ts"],
                       "properties": {"device_id": {"type": "string"},
                                      "ts": {"type": "string", "format": "date-time"},
                                      "temperature_c": {"type": "number", "maximum": 1000}}}"#
                    .to_string())
            },
        )
        .unwrap();
        StreamChecks::new(&pipeline.streams[0], 4, WireFormat::Json).unwrap()
    }

    fn check(text: &str) -> Result<Record, String> {
        checks().check(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn a_good_record_is_produced_as_sent_keyed_by_the_key_field() {
        let text = r#"{"device_id": "d-1", "ts": "2026-11-22T10:00:00Z", "temperature_c": 21.5}"#;
        let record = check(text).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"d-1"[..]));
        assert_eq!(record.value, text.as_bytes());
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        let cases = [
            (
                r#"{"device_id": "d", "ts": "2026-11-22T10:00:00Z", "#,
                "not valid JSON",
            ),
            (
                r#"{"ts": "2026-11-22T10:00:00Z"}"#,
                "\"device_id\" is a required property",
            ),
            (
                r#"{"device_id": "d", "ts": "yesterday"}"#,
                "/ts: \"yesterday\" is not a \"date-time\"",
            ),
            (
                r#"{"device_id": "d", "ts": "2026-11-22T10:00:00Z", "temperature_c": "hot"}"#,
                "/temperature_c: \"hot\" is not of type \"number\"",
            ),
            (
                r#"{"device_id": [[[[{}]]]]}"#,
                "nests 6 levels deep, more than the limit of 4",
            ),
            (
                &format!(r#"{{"device_id": "{}"}}"#, "x".repeat(300)),
                "more than the stream's max_record_size of 200",
            ),
            ("[1, 2]", "is not of type \"object\""),
        ];
        for (text, expected) in cases {
            let err = check(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
