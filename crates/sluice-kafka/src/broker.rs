//! The embedded Kafka-compatible broker of `sluice up` and `sluice broker`: tansu, running in
//! this process.
//!
//! tansu speaks the Kafka protocol (produce, fetch, consumer groups, idempotent producers) and
//! keeps its log in SQLite (`sqlite://…`, survives restarts) or in memory (`memory://tansu/`),
//! so a first run needs no Kafka installation.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use rsasl::mechanisms::scram::tools::{derive_keys, hash_password};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256, Sha512};
use tansu_broker::NODE_ID;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_sans_io::ScramMechanism;
use tansu_storage::{BrokerRegistrationRequest, ScramCredential, Storage, StorageContainer};
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
        Self::start_with_users(address, advertised, storage, Vec::new()).await
    }

    /// [`Self::start`], with SASL/SCRAM authentication (SHA-256 and SHA-512) for `users` when
    /// there are any: then a client must authenticate as one of them. tansu keeps credentials
    /// only in SQLite storage, so `users` need `sqlite://` (refused otherwise: with memory
    /// storage tansu drops them silently and nobody could log in).
    pub async fn start_with_users(
        address: SocketAddr,
        advertised: Option<&str>,
        storage: Url,
        users: Vec<ScramUser>,
    ) -> Result<Self, KafkaError> {
        let failed = |reason: String| KafkaError::Broker {
            listen: address.to_string(),
            reason,
        };
        if !users.is_empty() && storage.scheme() != "sqlite" {
            return Err(failed(format!(
                "SASL users need SQLite storage (sqlite://FILE): tansu keeps credentials only \
                 there, and with {storage} nobody could log in"
            )));
        }
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
            .spawn(move || serve(listeners, storage, users, built, stop_rx))
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

/// A SASL/SCRAM user of the embedded broker; `Debug` shows the name only.
#[derive(Clone)]
pub struct ScramUser {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: SecretString,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser")
            .field("name", &self.name)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

impl std::str::FromStr for ScramUser {
    type Err = String;

    /// "NAME:PASSWORD".
    fn from_str(text: &str) -> Result<Self, String> {
        let (name, password) = text
            .split_once(':')
            .filter(|(name, _)| !name.is_empty())
            .ok_or("expected NAME:PASSWORD")?;
        Ok(Self {
            name: name.to_string(),
            password: password.into(),
        })
    }
}

/// PBKDF2 iterations of a stored credential (Kafka's default is 4096).
const SCRAM_ITERATIONS: u32 = 4096;

/// Stores every user's SCRAM-SHA-256 and SCRAM-SHA-512 credential in `storage`, as tansu's
/// `AlterUserScramCredentials` would: the broker is registered first, since tansu's SQLite
/// storage records credentials only for a registered cluster.
async fn add_users(
    storage: &Url,
    advertised: &Url,
    users: &[ScramUser],
) -> Result<StorageContainer, String> {
    let failed = |err: tansu_storage::Error| format!("storing SASL users: {err:?}");
    let container = StorageContainer::builder()
        .cluster_id("sluice")
        .node_id(NODE_ID)
        .advertised_listener(advertised.clone())
        .storage(storage.clone())
        .silent(true)
        .build()
        .await
        .map_err(failed)?;
    container
        .register_broker(BrokerRegistrationRequest {
            broker_id: NODE_ID,
            cluster_id: "sluice".into(),
            incarnation_id: Uuid::now_v7(),
            rack: None,
        })
        .await
        .map_err(failed)?;
    for user in users {
        let password = user.password.expose_secret().as_bytes();
        for mechanism in [ScramMechanism::Scram256, ScramMechanism::Scram512] {
            let credential = scram_credential(mechanism, password);
            container
                .upsert_user_scram_credential(&user.name, mechanism, credential)
                .await
                .map_err(failed)?;
        }
    }
    Ok(container)
}

/// A stored SCRAM credential (RFC 5802): salt, iterations, StoredKey = H(ClientKey) and
/// ServerKey, both derived from the salted password.
fn scram_credential(mechanism: ScramMechanism, password: &[u8]) -> ScramCredential {
    let mut salt = [0u8; 32];
    rand::rng().fill_bytes(&mut salt);
    let (stored_key, server_key) = match mechanism {
        ScramMechanism::Scram256 => {
            let mut salted = Default::default();
            hash_password::<Sha256>(password, SCRAM_ITERATIONS, &salt, &mut salted);
            let (client_key, server_key) = derive_keys::<Sha256>(&salted);
            (Sha256::digest(client_key).to_vec(), server_key.to_vec())
        }
        ScramMechanism::Scram512 => {
            let mut salted = Default::default();
            hash_password::<Sha512>(password, SCRAM_ITERATIONS, &salt, &mut salted);
            let (client_key, server_key) = derive_keys::<Sha512>(&salted);
            (Sha512::digest(client_key).to_vec(), server_key.to_vec())
        }
    };
    ScramCredential {
        salt: Bytes::copy_from_slice(&salt),
        iterations: SCRAM_ITERATIONS as i32,
        stored_key: Bytes::from(stored_key),
        server_key: Bytes::from(server_key),
    }
}

struct Listeners {
    listen: Url,
    advertised: Url,
}

/// The broker's thread: builds it on a runtime of its own, reports through `built`, and serves
/// until `stop` fires (or its sender is dropped).
fn serve(
    listeners: Listeners,
    storage: Url,
    users: Vec<ScramUser>,
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
        // The users' storage stays open while the broker runs: closing it as the broker opens
        // the same SQLite file made the broker's set-up fail with "database is locked".
        let _users_storage = match users.is_empty() {
            true => None,
            false => match add_users(&storage, &listeners.advertised, &users).await {
                Ok(container) => Some(container),
                Err(err) => {
                    let _ = built.send(Err(err));
                    return;
                }
            },
        };
        let broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(NODE_ID)
            .cluster_id("sluice")
            .incarnation_id(Uuid::now_v7())
            .advertised_listener(listeners.advertised)
            .storage(storage.clone())
            .listener(listeners.listen)
            .authentication(!users.is_empty())
            .silent(true)
            .build()
            .await;
        let broker = broker.map_err(|err| format!("{err:?}"));
        let indexed = match broker {
            Ok(broker) => index_headers(&storage).await.map(|db| (broker, db)),
            Err(err) => Err(err),
        };
        // The index's database stays open while the broker runs, as the users' storage does.
        let (mut broker, _indexed_db) = match indexed {
            Ok(running) => {
                let _ = built.send(Ok(()));
                running
            }
            Err(err) => {
                let _ = built.send(Err(err));
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

/// Indexes the headers of SQLite storage by record, once tansu has made its tables. tansu 0.6
/// reads a record's headers with one query per record over an unindexed table, so fetching
/// records that carry headers (every record of `sluice gateway`) took time in the square of
/// the log: a topic of about 37,000 such records was not read back in two minutes. Other
/// storage: nothing.
async fn index_headers(storage: &Url) -> Result<Option<libsql::Database>, String> {
    if storage.scheme() != "sqlite" {
        return Ok(None);
    }
    // Where tansu puts it: the working directory, then the URL's host and path.
    let mut path = std::env::current_dir().map_err(|err| err.to_string())?;
    if let Some(domain) = storage.domain() {
        path.push(domain);
    }
    path.push(storage.path().trim_start_matches('/'));
    let failed = |err: libsql::Error| format!("indexing {}: {err}", path.display());
    let db = libsql::Builder::new_local(&path)
        .build()
        .await
        .map_err(failed)?;
    db.connect()
        .map_err(failed)?
        .execute(
            "create index if not exists sluice_header_record on header (topition, offset_id)",
            (),
        )
        .await
        .map_err(failed)?;
    Ok(Some(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sasl_user_is_name_colon_password_and_debug_hides_the_password() {
        let user: ScramUser = "alice:pa:ss".parse().unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.password.expose_secret(), "pa:ss");
        assert!(!format!("{user:?}").contains("pa:ss"));
        for bad in ["alice", ":secret", ""] {
            assert!(bad.parse::<ScramUser>().is_err(), "{bad:?}");
        }
    }
}
