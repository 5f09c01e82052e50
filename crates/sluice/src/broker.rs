//! `sluice broker`: the embedded tansu broker on its own, serving until Ctrl-C or SIGTERM. The
//! test suite, `scripts/services.sh` and the benchmarks run it instead of a separately built
//! tansu, so the broker version is the one `Cargo.toml` pins.

use anyhow::Result;
use sluice_kafka::broker::EmbeddedBroker;
use tokio_util::sync::CancellationToken;

use crate::cli::BrokerArgs;

/// Serves until `shutdown` fires, then stops the broker.
pub async fn run(args: BrokerArgs, shutdown: CancellationToken) -> Result<()> {
    let (listen, advertise) = (args.listen, args.advertise.as_deref());
    let broker =
        EmbeddedBroker::start_with_users(listen, advertise, args.storage.clone(), args.sasl_users)
            .await?;
    let advertised = args.advertise.unwrap_or_else(|| broker.bootstrap());
    println!(
        "sluice broker: Kafka protocol on {} (advertised as {advertised}), log in {}",
        args.listen, args.storage
    );
    shutdown.cancelled().await;
    drop(broker);
    println!("sluice broker: stopped");
    Ok(())
}
