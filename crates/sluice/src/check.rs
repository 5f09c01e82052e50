//! `sluice check`: reads and validates a pipeline file as every command does (`${NAME}`
//! resolved, every problem by field, the `[kafka.security]` files read), connects to nothing,
//! and prints what the commands would run with: secrets as `[REDACTED]`; and the AWS
//! permissions each role needs for it.

use std::fmt::Write as _;

use anyhow::Result;
use sluice_core::Pipeline;
use sluice_core::config::kafka::{AWS_MSK_IAM, KafkaSecurity, Sasl};
use sluice_core::config::{
    Catalog, CatalogKind, FlushPolicy, RegistryAuth, RestAuth, StreamFormat, TableFormat,
};
use sluice_kafka::ClientOptions;

/// The resolved pipeline, as text, after checking its security files.
pub fn describe(pipeline: &Pipeline, client: &ClientOptions) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "[kafka]")?;
    writeln!(out, "brokers = {:?}", client.brokers)?;
    writeln!(out, "group = {:?}", pipeline.kafka.group)?;
    security(&mut out, &pipeline.kafka.security)?;
    writeln!(out, "options = {:?}", pipeline.kafka.options)?;
    writeln!(out, "\n[lake]")?;
    writeln!(out, "storage_options = {:?}", pipeline.storage_options)?;
    for stream in &pipeline.streams {
        writeln!(out, "\n[[streams]] {}", stream.name)?;
        writeln!(out, "topic = {:?}", stream.topic)?;
        writeln!(out, "format = {}", format(&stream.format))?;
        writeln!(out, "key = {:?}", stream.key)?;
        writeln!(out, "dead_letter_topic = {:?}", stream.dead_letter_topic)?;
        writeln!(out, "max_record_size = {}", stream.max_record_size)?;
    }
    for table in &pipeline.tables {
        writeln!(out, "\n[[tables]] {} (from {})", table.name, table.from)?;
        writeln!(out, "uri = {:?}", table.uri)?;
        writeln!(
            out,
            "format = {}",
            storage(&table.name, table.format, table.catalog.as_ref())
        )?;
        writeln!(out, "partition_by = {:?}", table.partition_by)?;
        writeln!(out, "flush = {}", flush(&table.flush))?;
    }
    for catalog in pipeline.catalogs.values() {
        writeln!(
            out,
            "\n[catalogs.{}] {}",
            catalog.name,
            catalog_kind(&catalog.kind)
        )?;
        writeln!(out, "warehouse = {:?}", catalog.warehouse)?;
        writeln!(out, "namespace = {:?}", catalog.namespace)?;
    }
    for window in &pipeline.windows {
        writeln!(out, "\n[[windows]] {} (from {})", window.name, window.from)?;
        writeln!(out, "uri = {:?}", window.uri)?;
        writeln!(
            out,
            "format = {}",
            storage(&window.name, window.format, window.catalog.as_ref())
        )?;
        writeln!(out, "group_by = {:?}", window.group_by)?;
        writeln!(out, "flush = {}", flush(&window.flush))?;
    }
    for alert in &pipeline.alerts {
        writeln!(out, "\n[[alerts]] {} (from {})", alert.name, alert.from)?;
        writeln!(out, "topic = {:?}", alert.topic)?;
    }
    let gateway = &pipeline.gateway;
    writeln!(out, "\n[gateway]")?;
    writeln!(out, "listen = {:?}", gateway.listen)?;
    writeln!(out, "tls = {}", gateway.tls.is_some())?;
    let keys: Vec<&str> = gateway.keys.iter().map(|k| k.name.as_str()).collect();
    writeln!(out, "keys = {keys:?} (stored as SHA-256 hashes)")?;
    iam(&mut out, pipeline)?;
    Ok(out)
}

/// A table's format, with its catalog or how its objects are written.
fn storage(table: &str, format: TableFormat, catalog: Option<&Catalog>) -> String {
    match format {
        TableFormat::Delta => "\"delta\"".to_string(),
        TableFormat::Iceberg => {
            let catalog = catalog.expect("an Iceberg table has its catalog");
            format!(
                "\"iceberg\" (catalog {:?}: {}.{table})",
                catalog.name, catalog.namespace
            )
        }
        TableFormat::Files(files) => format!(
            "{:?} (compression {:?}, objects ending {:?})",
            files.kind.name(),
            files.compression.name(),
            files.extension()
        ),
    }
}

/// A stream's format, with its registry and how it authenticates (never the secret).
fn format(format: &StreamFormat) -> String {
    let name = format.name();
    let Some(registry) = format.registry() else {
        return match format {
            StreamFormat::Avro { .. } | StreamFormat::Protobuf { .. } => {
                format!("{name:?} (plain bodies of its schema)")
            }
            _ => format!("{name:?}"),
        };
    };
    let auth = match &registry.auth {
        RegistryAuth::None => "no auth".to_string(),
        RegistryAuth::Basic { user, .. } => format!("basic auth as {user:?}, password [REDACTED]"),
        RegistryAuth::Bearer(_) => "bearer token [REDACTED]".into(),
    };
    format!(
        "{name:?} (Confluent wire format; registry {:?}, {auth})",
        registry.url
    )
}

/// The AWS permissions each role of this pipeline needs, with what they apply to: the least a
/// policy can grant (deploy/terraform grants exactly these for examples/sensor.toml).
fn iam(out: &mut String, pipeline: &Pipeline) -> Result<()> {
    use sluice_kafka::msk_iam::{
        CLUSTER_ACTIONS, GATEWAY_TOPIC_ACTIONS, STREAM_GROUP_ACTIONS, STREAM_TOPIC_ACTIONS,
    };
    use sluice_lake::location::{S3_BUCKET_ACTIONS, S3_OBJECT_ACTIONS};
    let mut topics = pipeline.topics();
    topics.extend(
        pipeline
            .windows
            .iter()
            .filter_map(|w| w.repartition_topic.clone()),
    );
    topics.sort_unstable();
    let stream_topics: Vec<&str> = pipeline.streams.iter().map(|s| s.topic.as_str()).collect();
    let s3: Vec<&str> = pipeline
        .lake_tables()
        .filter_map(|(_, uri)| uri.strip_prefix("s3://"))
        .collect();
    writeln!(
        out,
        "\n[iam] # AWS permissions by role, and what they apply to"
    )?;
    writeln!(out, "stream.kafka_cluster = {CLUSTER_ACTIONS:?}")?;
    writeln!(
        out,
        "stream.kafka_topics = {STREAM_TOPIC_ACTIONS:?} # on {topics:?}"
    )?;
    writeln!(
        out,
        "stream.kafka_group = {STREAM_GROUP_ACTIONS:?} # on {:?}",
        pipeline.kafka.group
    )?;
    if !s3.is_empty() {
        writeln!(out, "stream.s3_objects = {S3_OBJECT_ACTIONS:?} # on {s3:?}")?;
        writeln!(
            out,
            "stream.s3_bucket = {S3_BUCKET_ACTIONS:?} # listing under {s3:?}"
        )?;
    }
    writeln!(out, "gateway.kafka_cluster = {CLUSTER_ACTIONS:?}")?;
    writeln!(
        out,
        "gateway.kafka_topics = {GATEWAY_TOPIC_ACTIONS:?} # on {stream_topics:?}"
    )?;
    Ok(())
}

fn security(out: &mut String, security: &KafkaSecurity) -> Result<()> {
    writeln!(out, "\n[kafka.security]")?;
    writeln!(out, "protocol = {:?}", security.protocol.name())?;
    if let Some(ca) = &security.tls.ca_file {
        writeln!(out, "ca_file = {:?}", ca.display().to_string())?;
    }
    if let Some(client) = &security.tls.client {
        writeln!(
            out,
            "cert_file = {:?}",
            client.cert_file.display().to_string()
        )?;
        writeln!(
            out,
            "key_file = {:?}",
            client.key_file.display().to_string()
        )?;
        if client.key_password.is_some() {
            writeln!(out, "key_password = \"[REDACTED]\"")?;
        }
    }
    match &security.sasl {
        None => {}
        Some(Sasl::Password {
            mechanism,
            username,
            ..
        }) => {
            writeln!(out, "sasl_mechanism = {mechanism:?}")?;
            writeln!(out, "username = {username:?}")?;
            writeln!(out, "password = \"[REDACTED]\"")?;
        }
        Some(Sasl::AwsMskIam { region }) => {
            writeln!(out, "sasl_mechanism = {AWS_MSK_IAM:?}")?;
            match region {
                Some(region) => writeln!(out, "aws_region = {region:?}")?,
                None => writeln!(out, "# aws_region: AWS_REGION when the client starts")?,
            }
        }
    }
    Ok(())
}

fn catalog_kind(kind: &CatalogKind) -> String {
    match kind {
        CatalogKind::Sql { uri } => format!("SQL catalog at {uri:?}"),
        CatalogKind::Postgres { url } => format!("SQL catalog in PostgreSQL at {:?}", url.shown),
        CatalogKind::Rest {
            uri,
            auth,
            oauth2_server_uri,
            scope,
        } => {
            let auth = match auth {
                RestAuth::None => "no authentication".to_string(),
                RestAuth::Token(_) => "a fixed bearer token (redacted)".to_string(),
                RestAuth::Credential(_) => format!(
                    "OAuth2 client credentials (redacted) exchanged at {:?}, scope {:?}",
                    oauth2_server_uri
                        .clone()
                        .unwrap_or_else(|| format!("{uri}/v1/oauth/tokens")),
                    scope.as_deref().unwrap_or("catalog")
                ),
            };
            format!("REST catalog at {uri:?}, {auth}")
        }
        CatalogKind::Glue {
            endpoint,
            region,
            catalog_id,
        } => format!(
            "AWS Glue at {}, region {}, catalog {}",
            endpoint.as_deref().unwrap_or("AWS's endpoint"),
            region.as_deref().unwrap_or("from the environment"),
            catalog_id.as_deref().unwrap_or("of the caller's account")
        ),
    }
}

fn flush(flush: &FlushPolicy) -> String {
    format!(
        "{{ max_rows = {}, max_bytes = {}, max_latency = {:?} }}",
        flush.max_rows, flush.max_bytes, flush.max_latency
    )
}
