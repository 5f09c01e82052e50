//! An Iceberg REST catalog (`type = "rest"`), through the iceberg crate's own client, with the
//! OAuth2 token fetched again when the catalog stops accepting it.
//!
//! The crate exchanges `credential` for a token once and keeps it (its `authenticate` has a
//! "TODO: Support automatic token refreshing"). Tokens expire, often within the hour; a
//! member that runs for days must not fail on the first 401. [`TokenRefreshing`] forgets the
//! token when the catalog answers 401 Unauthorized, so that the next request exchanges the
//! credential again, and repeats the request once. A commit is not repeated here (it is
//! consumed); its 401 is marked retryable, so that the transaction plans it again on the same
//! checked state ([`crate::catalog::PinnedCatalog`]) with the new token. A fixed `token`
//! cannot be refreshed: its 401 stays an error, which the member reports and retries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::io::StorageFactory;
use iceberg::table::Table;
use iceberg::{
    Catalog, CatalogBuilder, Error, Namespace, NamespaceIdent, Result, TableCommit, TableCreation,
    TableIdent,
};
use iceberg_catalog_rest::{RestCatalog, RestCatalogBuilder};
use secrecy::ExposeSecret;
use sluice_core::config::{Catalog as CatalogConfig, RestAuth};

/// Opens the REST catalog at `uri` for `config`, its tables' files reached through `storage`.
pub async fn open(
    config: &CatalogConfig,
    uri: &str,
    auth: &RestAuth,
    oauth2_server_uri: Option<&str>,
    scope: Option<&str>,
    storage: Arc<dyn StorageFactory>,
) -> Result<TokenRefreshing> {
    let mut props = HashMap::from([
        ("uri".to_string(), uri.to_string()),
        ("warehouse".to_string(), config.warehouse.clone()),
    ]);
    match auth {
        RestAuth::None => {}
        RestAuth::Credential(credential) => {
            props.insert("credential".into(), credential.expose_secret().into());
        }
        RestAuth::Token(token) => {
            props.insert("token".into(), token.expose_secret().into());
        }
    }
    if let Some(token_uri) = oauth2_server_uri {
        props.insert("oauth2-server-uri".into(), token_uri.into());
    }
    if let Some(scope) = scope {
        props.insert("scope".into(), scope.into());
    }
    let inner = RestCatalogBuilder::default()
        .with_storage_factory(storage)
        .load(&config.name, props)
        .await?;
    Ok(TokenRefreshing {
        name: config.name.clone(),
        inner,
        refreshes: matches!(auth, RestAuth::Credential(_)),
    })
}

/// A REST catalog whose OAuth2 token is fetched again when the catalog answers 401.
#[derive(Debug)]
pub struct TokenRefreshing {
    name: String,
    inner: RestCatalog,
    /// Whether a new token can be had (client credentials, not a fixed token).
    refreshes: bool,
}

/// Whether the catalog refused `err`'s request as unauthenticated (the client reports the
/// status only in the error's context, which its text carries).
fn is_unauthorized(err: &Error) -> bool {
    err.to_string().contains("401 Unauthorized")
}

impl TokenRefreshing {
    /// Forgets the token when `err` says the catalog no longer accepts it; whether it did.
    async fn forget_rejected_token(&self, err: &Error) -> Result<bool> {
        if !(self.refreshes && is_unauthorized(err)) {
            return Ok(false);
        }
        tracing::info!(
            catalog = %self.name,
            "the REST catalog no longer accepts the token; exchanging the credential again"
        );
        self.inner.invalidate_token().await?;
        Ok(true)
    }

    /// Runs `call`, and once more with a new token when the catalog refused the old one.
    async fn again<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match call().await {
            Err(err) if self.forget_rejected_token(&err).await? => call().await,
            other => other,
        }
    }
}

#[async_trait]
impl Catalog for TokenRefreshing {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.again(|| self.inner.list_namespaces(parent)).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.again(|| self.inner.create_namespace(namespace, properties.clone()))
            .await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.again(|| self.inner.get_namespace(namespace)).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.again(|| self.inner.namespace_exists(namespace)).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.again(|| self.inner.update_namespace(namespace, properties.clone()))
            .await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.again(|| self.inner.drop_namespace(namespace)).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.again(|| self.inner.list_tables(namespace)).await
    }

    /// Not repeated (a creation is consumed): a 401 forgets the token and stays an error;
    /// the member opening the table tries again.
    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let result = self.inner.create_table(namespace, creation).await;
        if let Err(err) = &result {
            self.forget_rejected_token(err).await?;
        }
        result
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        self.again(|| self.inner.load_table(table)).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.again(|| self.inner.drop_table(table)).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.again(|| self.inner.purge_table(table)).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.again(|| self.inner.table_exists(table)).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.again(|| self.inner.rename_table(src, dest)).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.again(|| self.inner.register_table(table, metadata_location.clone()))
            .await
    }

    /// A refused commit did not land: retryable once the token is forgotten, so that the
    /// transaction plans it again (on the state it was checked against) with a new token.
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        match self.inner.update_table(commit).await {
            Err(err) if self.forget_rejected_token(&err).await? => Err(err.with_retryable(true)),
            other => other,
        }
    }
}
