//! The embedded Kafka-compatible broker of `sluice up` and `sluice broker`: tansu, running in
//! this process.
//!
//! tansu speaks the Kafka protocol (produce, fetch, consumer groups, idempotent producers) and
//! keeps its log in SQLite (`sqlite://…`, survives restarts) or in memory (`memory://tansu/`),
//! so a first run needs no Kafka installation.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use tansu_broker::NODE_ID;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::sync::oneshot;
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

use crate::KafkaError;

/// How long the broker gets to accept connections after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Worker threads of the broker's own runtime.
const BROKER_THREADS: usize = 2;

/// A tansu broker serving on a local address until dropped.
///
/// It runs on its own threads and tokio runtime, not on the caller's: a client in the same
/// process that blocks a runtime thread while it waits for the broker (a librdkafka seek or
/// metadata request) must not keep the broker from answering. On a busy 2-core machine, with
/// the broker on the pipeline's two workers, it stopped answering for minutes and `sluice up`
/// landed nothing.
pub struct EmbeddedBroker {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a broker on `address`, telling clients to connect to `advertised` ("host:port";
    /// `None`: `address`), storing its log at `storage` (such as
    /// `sqlite://./sluice-data/kafka.db` or `memory://tansu/`), and waits until it accepts
    /// connections.
    pub async fn start(
        address: SocketAddr,
        advertised: Option<&str>,
        storage: Url,
    ) -> Result<Self, KafkaError> {
        let failed = |reason: String| KafkaError::Broker {
            listen: address.to_string(),
            reason,
        };
        let tcp = |host_port: &str| {
            Url::parse(&format!("tcp://{host_port}"))
                .map_err(|err| failed(format!("{host_port}: {err}")))
        };
        let listeners = Listeners {
            listen: tcp(&address.to_string())?,
            advertised: tcp(advertised.unwrap_or(&address.to_string()))?,
        };
        // tansu binds the port itself and reports a failure only in its log, and a port taken
        // by another server would pass the readiness check below: try it first.
        std::net::TcpListener::bind(address).map_err(|err| {
            failed(format!(
                "{err} (is another broker running? --listen moves this one)"
            ))
        })?;
        let (built, built_rx) = oneshot::channel::<Result<(), String>>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let serving = std::thread::Builder::new()
            .name("sluice-broker".into())
            .spawn(move || serve(listeners, storage, built, stop_rx))
            .map_err(|err| failed(err.to_string()))?;
        let mut broker = Self {
            address,
            stop: Some(stop),
            serving: Some(serving),
        };
        built_rx
            .await
            .unwrap_or_else(|_| Err("the broker thread ended".into()))
            .map_err(failed)?;
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Ok(broker);
            }
            let ended = broker.serving.as_ref().is_none_or(JoinHandle::is_finished);
            if ended || started.elapsed() > READY_TIMEOUT {
                broker.shut_down();
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

    /// Stops serving; the broker's thread ends on its own.
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.serving.take();
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Where the broker listens, and the address it gives clients in metadata.
struct Listeners {
    listen: Url,
    advertised: Url,
}

/// The broker's thread: builds it on a runtime of its own, reports through `built`, and serves
/// until `stop` fires (or its sender is dropped).
fn serve(
    listeners: Listeners,
    storage: Url,
    built: oneshot::Sender<Result<(), String>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BROKER_THREADS)
        .thread_name("sluice-broker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = built.send(Err(format!("cannot start its runtime: {err}")));
            return;
        }
    };
    runtime.block_on(async move {
        let broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(NODE_ID)
            .cluster_id("sluice")
            .incarnation_id(Uuid::now_v7())
            .advertised_listener(listeners.advertised)
            .storage(storage)
            .listener(listeners.listen)
            .silent(true)
            .build()
            .await;
        let mut broker = match broker {
            Ok(broker) => {
                let _ = built.send(Ok(()));
                broker
            }
            Err(err) => {
                let _ = built.send(Err(format!("{err:?}")));
                return;
            }
        };
        tokio::select! {
            served = broker.serve(Instant::now()) => {
                if let Err(err) = served {
                    tracing::error!(error = ?err, "The embedded broker stopped.");
                }
            }
            _ = stop => {}
        }
    });
    runtime.shutdown_background();
}
