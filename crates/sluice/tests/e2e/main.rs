//! End-to-end tests: the `sluice` binary against a real Kafka-protocol broker (tansu, served by
//! this build's `sluice broker`) and a real S3-compatible server (s3s-fs), both started by
//! `scripts/test.sh`, with results checked by our own SQL and by an independent reader (the
//! Python `deltalake` package).

mod airflow;
mod bad_input;
mod broker;
mod chaos;
mod compaction;
mod console;
mod gateway;
mod gateway_guards;
mod gateway_matrix;
mod gateway_outages;
mod glue;
mod groups;
mod helpers;
mod iceberg;
mod iceberg_postgres;
mod iceberg_rest;
mod kafka;
mod kafka_tls;
mod landing;
mod load;
mod members;
mod metrics;
mod outages;
mod plain_files;
mod private;
mod prometheus;
mod registry;
mod repartition;
mod s3_credentials;
mod secrets;
mod side_outputs;
mod up;
mod windows;
