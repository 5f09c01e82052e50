//! Every default of the pipeline file, in one place.

use std::time::Duration;

/// Rows buffered for one table before a flush: large enough for Parquet files worth reading.
pub const FLUSH_MAX_ROWS: usize = 500_000;
/// Decoded bytes buffered for one table before a flush.
pub const FLUSH_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// How long a row may wait in a buffer before it is flushed: the lake's freshness bound.
pub const FLUSH_MAX_LATENCY: Duration = Duration::from_secs(10);
/// Buffered bytes across all tables and partitions of one stream process, before the largest
/// buffer is committed early: bounds memory when many partitions × hours are open.
pub const MEMORY_BUDGET: &str = "256MiB";
/// Records decoded together into one Arrow batch.
pub const DECODE_BATCH_RECORDS: usize = 8_192;
/// Partition columns of a table when the pipeline file names none.
pub const PARTITION_BY: [&str; 2] = ["date", "hour"];
/// The size `sluice compact` rewrites small files into.
pub const COMPACT_TARGET_SIZE: &str = "128MiB";
/// The largest record a stream accepts; bigger ones go to the dead-letter topic.
pub const MAX_RECORD_SIZE: &str = "256KiB";
/// The deepest JSON nesting a record may have (objects and arrays).
pub const MAX_JSON_DEPTH: usize = 128;
/// Where `sluice gateway` listens.
pub const GATEWAY_LISTEN: &str = "127.0.0.1:8080";
/// The largest request body as sent (compressed or not).
pub const GATEWAY_MAX_BODY: &str = "10MiB";
/// The largest request body after decompression: a gzip bomb stops here.
pub const GATEWAY_MAX_DECOMPRESSED_BODY: &str = "64MiB";
/// Records in one request (Firehose's PutRecordBatch allows 500; batching more is cheaper).
pub const GATEWAY_MAX_RECORDS: usize = 10_000;
/// Nesting of objects and arrays in one record sent to the gateway.
pub const GATEWAY_MAX_DEPTH: usize = 32;
/// Ingest requests the gateway serves at once; more are answered 503 at once. It bounds the
/// memory requests can hold: each holds at most `max_body` plus `max_decompressed_body`.
pub const GATEWAY_MAX_CONCURRENT: usize = 256;
/// How long a client may take to send a request's headers before the connection is closed (a
/// slowloris holds no connection longer).
pub const GATEWAY_HEADER_TIMEOUT: &str = "10s";
/// How long a client may take to send a request's body (408 beyond).
pub const GATEWAY_BODY_TIMEOUT: &str = "30s";
/// Where the gateway spools accepted records while Kafka is down.
pub const GATEWAY_SPOOL_DIR: &str = "./sluice-data/spool";
/// The most the spool holds before requests are refused with 503.
pub const GATEWAY_SPOOL_MAX_SIZE: &str = "1GiB";
/// How long an `Idempotency-Key` is remembered.
pub const GATEWAY_IDEMPOTENCY_WINDOW: &str = "10m";
/// How long a request waits for Kafka before its records are spooled instead.
pub const GATEWAY_PRODUCE_TIMEOUT: &str = "2s";
