//! A SQL catalog's rows in a PostgreSQL database, through tokio-postgres: one connection,
//! made again when the server dropped it (a restart, a failover), so that a catalog that was
//! down is reached again by the next statement. TLS (`sslmode=prefer`, the default, or
//! `require`) is rustls, verifying the server against the system's roots (`SSL_CERT_FILE`
//! adds a file of them, as for every rustls client in sluice).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use iceberg::{Error, ErrorKind, Result};
use secrecy::ExposeSecret;
use sluice_core::config::PostgresUrl;
use tokio::sync::Mutex;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::SqlRows;

/// How long connecting, or an unanswered request on a connection, may take before the
/// connection is given up (unless the URL says otherwise), so that a half-open connection after
/// a failover fails the statement, and the next one connects again.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one statement may take, connecting included; then the connection is dropped.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL database.
pub struct PostgresRows {
    url: PostgresUrl,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The open connection's client, if any.
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgreSQL database {}", self.url.shown)
    }
}

impl PostgresRows {
    /// Reaches the database at `url` (connecting at the first statement).
    pub fn new(url: &PostgresUrl) -> Result<Self> {
        let mut config: tokio_postgres::Config =
            url.connect.expose_secret().parse().map_err(|err| {
                Error::new(
                    ErrorKind::DataInvalid,
                    format!("SQL catalog {}: {err}", url.shown),
                )
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECTION_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(CONNECTION_TIMEOUT);
        }
        Ok(Self {
            url: url.clone(),
            config,
            tls: MakeRustlsConnect::new(tls_config()?),
            client: Mutex::new(None),
        })
    }

    /// The error with its causes (tokio-postgres says "error performing TLS handshake" and
    /// keeps why, such as the certificate's issuer being unknown, in its source).
    fn failed(&self, err: tokio_postgres::Error) -> Error {
        let mut message = format!("SQL catalog {}: {err}", self.url.shown);
        let mut cause = std::error::Error::source(&err);
        while let Some(reason) = cause {
            message.push_str(&format!(": {reason}"));
            cause = reason.source();
        }
        Error::new(ErrorKind::Unexpected, message)
    }

    /// Runs `run` with a client of an open connection, connecting first when there is none
    /// or the server closed it; within [`STATEMENT_TIMEOUT`], or the connection is dropped.
    async fn with_client<T>(
        &self,
        run: impl AsyncFnOnce(&Client) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let mut client = self.client.lock().await;
        let ran = tokio::time::timeout(STATEMENT_TIMEOUT, self.run_on(&mut client, run)).await;
        ran.unwrap_or_else(|_| {
            *client = None;
            Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "SQL catalog {}: no answer within {STATEMENT_TIMEOUT:?}; connecting again",
                    self.url.shown
                ),
            ))
        })
    }

    async fn run_on<T>(
        &self,
        client: &mut Option<Client>,
        run: impl AsyncFnOnce(&Client) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        if client.as_ref().is_none_or(Client::is_closed) {
            let (opened, connection) =
                (self.config.connect(self.tls.clone()).await).map_err(|err| self.failed(err))?;
            let shown = self.url.shown.clone();
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::warn!(catalog = %shown, error = %err, "SQL catalog connection lost.");
                }
            });
            *client = Some(opened);
        }
        let open = client.as_ref().expect("connected above");
        run(open).await.map_err(|err| self.failed(err))
    }
}

/// rustls with the system's roots: what a `sslmode=prefer` or `require` connection verifies
/// the server's certificate against.
fn tls_config() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the system store has but rustls cannot parse are skipped, as curl does.
    let (_added, _skipped) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::new(ErrorKind::Unexpected, format!("TLS: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `sql` with its `?1` parameters written as PostgreSQL's `$1` (a `?` not followed by a digit
/// is left as it is).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let parameter = c == '?' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if parameter { '$' } else { c });
    }
    out
}

fn as_params(params: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

#[async_trait]
impl SqlRows for PostgresRows {
    async fn texts(&self, sql: &str, params: Vec<String>) -> Result<Vec<Option<String>>> {
        let sql = numbered(sql);
        let rows = self
            .with_client(async |client| client.query(&sql, &as_params(&params)).await)
            .await?;
        rows.iter()
            .map(|row| row.try_get::<_, Option<String>>(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(|err| self.failed(err))
    }

    async fn execute(&self, sql: &str, params: Vec<String>) -> Result<u64> {
        let sql = numbered(sql);
        self.with_client(async |client| client.execute(&sql, &as_params(&params)).await)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_as_postgresql_numbers_them() {
        assert_eq!(
            numbered("UPDATE t SET a = ?1 WHERE b = ?2 AND c = ?10 AND d = '?'"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $10 AND d = '?'"
        );
    }
}
