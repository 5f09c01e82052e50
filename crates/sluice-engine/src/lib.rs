//! The engine: what happens to a stream's records between a source and the lake, and the two
//! drivers that feed it. Roles are `run(options, shutdown)` functions the binary wires up.
//!
//! # Layout
//! - [`stream`]: `sluice stream`, a consumer-group member writing the lake exactly once.
//! - [`load`]: `sluice load`, one stream's job over NDJSON files, with no broker.
//! - [`job`]: a stream's job: one partition's decoded batch through its operators.
//! - [`operators`]: the processing steps (windows, side outputs, tables) behind one trait.
//! - [`lanes`]: per source partition, where reading goes on and what each table buffered.
//! - [`windows`]: per partition, window state: events in, closed windows out, late events.
//! - [`side`]: dead letters, alerts and late copies, exactly once per source record.
//! - [`registry`]: writer schemas (Avro, JSON Schema) looked up by id in a Schema Registry.
//! - [`repartition`]: events forwarded to a window's repartition topic.
//! - [`output`]: a table being written (its sink, flush policy and commit), and its marks.
//! - [`events`]: what the engine observes, each event logged and counted in one place.
//! - [`observe`]: `/metrics`, `/healthz` and `/readyz` over HTTP.
//!
//! The engine uses `anyhow` for the errors it reports to the binary: each failure carries
//! what was being done (table, topic, partition) as context.

pub mod events;
pub mod job;
pub mod lanes;
pub mod load;
pub mod observe;
pub mod operators;
pub mod output;
pub mod registry;
pub mod repartition;
pub mod side;
pub mod stream;
pub mod windows;
