//! The pipeline model of sluice, free of network and file access so that it can be tested alone.
//!
//! # Layout
//! - [`config`]: the pipeline file — serde types mirroring the TOML, then a pure validation
//!   step that reports every problem with its field before anything connects.
//! - [`schema`]: stream schemas (JSON Schema files, inline field lists, Avro schemas, Protobuf
//!   messages) mapped to Arrow.
//! - [`decode`]: Kafka payloads decoded in batches straight into Arrow record batches, with
//!   bad records isolated and reported instead of failing the batch.
//! - [`event_time`]: the `date`/`hour` partition columns derived from event time.
//! - [`windows`]: event-time windows and their aggregation (DataFusion) when they close.
//! - [`expressions`]: SQL expressions (rules, filters) compiled by DataFusion, run on batches.
//! - [`settings`]: settings passed through to client libraries, secret values redacted.

pub mod config;
pub mod decode;
pub mod event_time;
pub mod expressions;
pub mod schema;
pub mod settings;
pub mod windows;

pub use config::{ConfigError, Pipeline};
pub use decode::{DecodedBatch, Decoder, RawRecord, RejectKind, Rejected};
pub use schema::{FieldType, StreamSchema};
pub use settings::Settings;
