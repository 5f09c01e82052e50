//! The embedded Kafka-compatible broker of `sluice up`: tansu, running in this process.
//!
//! tansu speaks the Kafka protocol (produce, fetch, consumer groups, idempotent producers) and
//! keeps its log in SQLite, so a first run needs no Kafka installation and survives restarts.

use std::net::SocketAddr;
use std::time::Duration;

use tansu_broker::NODE_ID;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

use crate::KafkaError;

/// How long the broker gets to accept connections after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A tansu broker serving on a local address until dropped.
pub struct EmbeddedBroker {
    address: SocketAddr,
    serving: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts a broker on `address` storing its log at `storage` (such as
    /// `sqlite://./sluice-data/kafka.db` or `memory://tansu/`) and waits until it accepts
    /// connections.
    pub async fn start(address: SocketAddr, storage: Url) -> Result<Self, KafkaError> {
        let failed = |reason: String| KafkaError::Broker {
            listen: address.to_string(),
            reason,
        };
        let listener =
            Url::parse(&format!("tcp://{address}")).map_err(|err| failed(err.to_string()))?;
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(NODE_ID)
            .cluster_id("sluice")
            .incarnation_id(Uuid::now_v7())
            .advertised_listener(listener.clone())
            .storage(storage)
            .listener(listener)
            .silent(true)
            .build()
            .await
            .map_err(|err| failed(format!("{err:?}")))?;
        let serving = tokio::spawn(async move {
            if let Err(err) = broker.serve(Instant::now()).await {
                tracing::error!(error = ?err, "The embedded broker stopped.");
            }
        });
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Ok(Self { address, serving });
            }
            if serving.is_finished() || started.elapsed() > READY_TIMEOUT {
                serving.abort();
                return Err(failed(format!(
                    "not accepting connections after {READY_TIMEOUT:?} (port in use?)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// "host:port" for Kafka clients.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.serving.abort();
    }
}
