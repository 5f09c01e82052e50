//! `sluice topics`: create, list and describe topics through the Kafka admin API.

use anyhow::Result;
use sluice_kafka::ClientOptions;
use sluice_kafka::admin::{self, Created};

use crate::cli::TopicsCommand;

/// Runs one topics command, printing its result on stdout.
pub async fn run(client: ClientOptions, command: TopicsCommand) -> Result<()> {
    match command {
        TopicsCommand::Create {
            names,
            partitions,
            replication,
        } => {
            for name in names {
                match admin::create_topic(&client, &name, partitions, replication).await? {
                    Created::Created => println!(
                        "created topic {name} ({partitions} partitions, replication {replication})"
                    ),
                    Created::AlreadyExisted => {
                        println!("topic {name} already exists; left as it is")
                    }
                }
            }
        }
        TopicsCommand::List => {
            for name in tokio::task::spawn_blocking(move || admin::list_topics(&client)).await?? {
                println!("{name}");
            }
        }
        TopicsCommand::Describe { name, group } => {
            let info = tokio::task::spawn_blocking(move || {
                admin::describe_topic(&client, &name, group.as_deref())
            })
            .await??;
            println!("topic {} ({} partitions)", info.name, info.partitions.len());
            println!(
                "{:>9} {:>6} {:>12} {:>12} {:>12} {:>10}",
                "partition", "leader", "low", "high", "committed", "lag"
            );
            for p in &info.partitions {
                let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                println!(
                    "{:>9} {:>6} {:>12} {:>12} {:>12} {:>10}",
                    p.id,
                    p.leader,
                    p.low,
                    p.high,
                    show(p.committed),
                    show(p.lag())
                );
            }
        }
        TopicsCommand::ReadSpeed { name, json } => {
            let speed = tokio::task::spawn_blocking(move || {
                sluice_kafka::read_speed::read_topic(&client, &name)
            })
            .await??;
            if json {
                println!("{}", serde_json::to_string(&speed)?);
            } else {
                println!(
                    "{} records ({:.1} MiB) in {:.2} s: {:.0} records/s",
                    speed.records,
                    speed.bytes as f64 / (1024.0 * 1024.0),
                    speed.seconds,
                    speed.records as f64 / speed.seconds
                );
            }
        }
    }
    Ok(())
}
