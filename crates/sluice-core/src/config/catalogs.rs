//! `[catalogs.<name>]`: where Iceberg tables are registered, so that engines (Athena, Trino,
//! Spark, pyiceberg) find them by name: a SQL catalog (SQLite or PostgreSQL), an Iceberg REST
//! catalog or AWS Glue. A table with `format = "iceberg"` names its catalog; `sluice catalog sync` registers
//! the other tables in the Glue catalogs.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::file::CatalogSection;
use super::{Problems, TableFormat};

/// The namespace tables are registered in when a catalog names none.
pub const DEFAULT_NAMESPACE: &str = "sluice";

/// An Iceberg catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Its name in the pipeline file, also the catalog name stored with its tables (engines
    /// reading the same catalog must use it too).
    pub name: String,
    /// What kind of catalog it is and how to reach it.
    pub kind: CatalogKind,
    /// Where tables created without a location would go (`s3://…`, `file:///…`); for a REST
    /// catalog, the warehouse it is asked for.
    pub warehouse: String,
    /// The namespace (database) sluice's tables are registered in.
    pub namespace: String,
}

/// The kinds of catalog sluice talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKind {
    /// The SQL catalog: tables and their metadata locations in a SQLite database, the layout
    /// pyiceberg's and iceberg-rust's `SqlCatalog` share.
    Sql {
        /// The database URI, such as `sqlite:////var/lib/sluice/catalog.db`.
        uri: String,
    },
    /// The same SQL catalog in a PostgreSQL database.
    Postgres {
        /// How to reach it.
        url: PostgresUrl,
    },
    /// An Iceberg REST catalog (Polaris, Lakekeeper, Gravitino, Nessie, S3 Tables, Unity…).
    Rest {
        /// Its base URL.
        uri: String,
        /// How requests authenticate.
        auth: RestAuth,
        /// Where OAuth2 client credentials are exchanged, when not at `<uri>/v1/oauth/tokens`.
        oauth2_server_uri: Option<String>,
        /// The OAuth2 scope, when not `catalog`.
        scope: Option<String>,
    },
    /// AWS Glue, where Athena finds tables: Iceberg tables are registered there by their
    /// metadata location; `sluice catalog sync` registers Delta and plain-files tables too.
    Glue {
        /// The endpoint, when not AWS's own (moto, LocalStack).
        endpoint: Option<String>,
        /// The region, when not the environment's.
        region: Option<String>,
        /// The catalog id (AWS account), when not the caller's own.
        catalog_id: Option<String>,
    },
}

/// A PostgreSQL connection URL, which may hold a password: shown only without it.
#[derive(Clone)]
pub struct PostgresUrl {
    /// The URL as libpq and tokio-postgres take it (`postgresql://user:password@host:5432/db`,
    /// `?sslmode=require`), a SQLAlchemy driver suffix (`postgresql+psycopg2://`) removed.
    pub connect: SecretString,
    /// The URL with its password (if any) replaced by `[REDACTED]`.
    pub shown: String,
}

impl PostgresUrl {
    /// Reads `uri` (`postgresql://`, `postgres://` or SQLAlchemy's `postgresql+driver://`, as
    /// pyiceberg takes it); `None` when it is not such a URL.
    pub fn parse(uri: &str) -> Option<Self> {
        let (scheme, rest) = uri.split_once("://")?;
        let scheme = scheme.split('+').next()?;
        if !matches!(scheme, "postgresql" | "postgres") {
            return None;
        }
        let connect = format!("postgresql://{rest}");
        let mut shown = url::Url::parse(&connect).ok()?;
        if shown.host_str().is_none_or(str::is_empty) {
            return None;
        }
        if shown.password().is_some() {
            shown.set_password(Some("[REDACTED]")).ok()?;
        }
        // libpq and tokio-postgres also take it as a parameter.
        let query: Vec<(String, String)> = (shown.query_pairs())
            .map(|(key, value)| match key.as_ref() {
                "password" => (key.into_owned(), "[REDACTED]".to_string()),
                _ => (key.into_owned(), value.into_owned()),
            })
            .collect();
        if !query.is_empty() {
            shown.query_pairs_mut().clear().extend_pairs(query);
        }
        Some(Self {
            connect: connect.into(),
            // The URL encodes the brackets it is given.
            shown: shown.to_string().replace("%5BREDACTED%5D", "[REDACTED]"),
        })
    }
}

impl PostgresUrl {
    /// Why the connection it describes cannot be made as asked: an `sslmode` or TLS file
    /// parameter the client does not take (it would refuse the URL when first connecting).
    pub fn unsupported(&self) -> Option<String> {
        let url = url::Url::parse(&self.shown).ok()?;
        url.query_pairs()
            .find_map(|(key, value)| match key.as_ref() {
                "sslmode" if !matches!(value.as_ref(), "disable" | "prefer" | "require") => {
                    Some(format!(
                        "sslmode={value} is not supported: use require (TLS verified against the \
                 system's roots; SSL_CERT_FILE names a file of CA certificates), prefer or disable"
                    ))
                }
                "sslrootcert" | "sslcert" | "sslkey" | "sslcrl" | "sslpassword" => Some(format!(
                    "{key} is not supported: the server is verified against the system's roots \
                 (SSL_CERT_FILE names a file of CA certificates); client certificates are not \
                 built"
                )),
                _ => None,
            })
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Equal when the same URL, password included.
impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.connect.expose_secret() == other.connect.expose_secret()
    }
}

impl Eq for PostgresUrl {}

/// How requests to a REST catalog authenticate.
#[derive(Debug, Clone)]
pub enum RestAuth {
    /// Not at all.
    None,
    /// OAuth2 client credentials (`client_id:client_secret`), exchanged for a bearer token.
    Credential(SecretString),
    /// A fixed bearer token.
    Token(SecretString),
}

/// Equal when the same kind with the same secret (secrecy's strings have no `PartialEq`).
impl PartialEq for RestAuth {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::None, Self::None) => true,
            (Self::Credential(a), Self::Credential(b)) | (Self::Token(a), Self::Token(b)) => {
                a.expose_secret() == b.expose_secret()
            }
            _ => false,
        }
    }
}

impl Eq for RestAuth {}

/// The catalogs of a pipeline file, checked.
pub(crate) fn validate(
    raw: &BTreeMap<String, CatalogSection>,
    problems: &mut Problems,
) -> BTreeMap<String, Catalog> {
    raw.iter()
        .filter_map(|(name, section)| {
            let at = format!("catalogs.{name}");
            validate_one(&at, name, section, problems)
        })
        .map(|catalog| (catalog.name.clone(), catalog))
        .collect()
}

fn validate_one(
    at: &str,
    name: &str,
    raw: &CatalogSection,
    problems: &mut Problems,
) -> Option<Catalog> {
    let before = problems.0.len();
    let kind = match raw.kind.as_str() {
        "sql" => sql_catalog(at, raw, problems),
        "rest" => rest_catalog(at, raw, problems),
        "glue" => glue_catalog(at, raw, problems),
        other => {
            problems.add(
                format!("{at}.type"),
                format!(
                    "expected \"sql\" (a SQLite or PostgreSQL catalog), \"rest\" (an Iceberg \
                     REST catalog) or \"glue\" (AWS Glue), got {other:?}"
                ),
            );
            None
        }
    };
    let only_for = |field: &str, given: bool, kinds: &[&str], problems: &mut Problems| {
        if given && !kinds.contains(&raw.kind.as_str()) {
            problems.add(
                format!("{at}.{field}"),
                format!("only a {} catalog takes it", kinds.join(" or ")),
            );
        }
    };
    only_for("credential", raw.credential.is_some(), &["rest"], problems);
    only_for("token", raw.token.is_some(), &["rest"], problems);
    let token_uri = raw.oauth2_server_uri.is_some();
    only_for("oauth2_server_uri", token_uri, &["rest"], problems);
    only_for("scope", raw.scope.is_some(), &["rest"], problems);
    only_for("region", raw.region.is_some(), &["glue"], problems);
    only_for("catalog_id", raw.catalog_id.is_some(), &["glue"], problems);
    if raw.warehouse.trim().is_empty() {
        problems.add(
            format!("{at}.warehouse"),
            "expected s3://bucket/path or file:///path (for a REST catalog, its warehouse)",
        );
    }
    let namespace = raw.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    if !super::is_identifier(namespace) {
        problems.add(
            format!("{at}.namespace"),
            format!("expected a name of letters, digits and _, got {namespace:?}"),
        );
    }
    let kind = kind?;
    (problems.0.len() == before).then(|| Catalog {
        name: name.to_string(),
        kind,
        warehouse: raw.warehouse.clone(),
        namespace: namespace.to_string(),
    })
}

fn sql_catalog(at: &str, raw: &CatalogSection, problems: &mut Problems) -> Option<CatalogKind> {
    let uri = raw.uri.clone().unwrap_or_default();
    if let Some(url) = PostgresUrl::parse(&uri) {
        if let Some(problem) = url.unsupported() {
            problems.add(format!("{at}.uri"), problem);
        }
        return Some(CatalogKind::Postgres { url });
    }
    let path = uri.strip_prefix("sqlite:").unwrap_or_default();
    if !uri.starts_with("sqlite:") || path.trim_start_matches('/').is_empty() {
        // The URI may hold a password: it is not repeated.
        problems.add(
            format!("{at}.uri"),
            "expected sqlite:////absolute/path.db, sqlite:relative/path.db or \
             postgresql://user:password@host:5432/database",
        );
    }
    Some(CatalogKind::Sql { uri })
}

fn glue_catalog(at: &str, raw: &CatalogSection, problems: &mut Problems) -> Option<CatalogKind> {
    if let Some(endpoint) = raw.uri.as_deref().filter(|u| !is_url(u)) {
        problems.add(
            format!("{at}.uri"),
            format!("expected Glue's http:// or https:// endpoint, got {endpoint:?}"),
        );
    }
    Some(CatalogKind::Glue {
        endpoint: raw.uri.clone(),
        region: raw.region.clone(),
        catalog_id: raw.catalog_id.clone(),
    })
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

fn rest_catalog(at: &str, raw: &CatalogSection, problems: &mut Problems) -> Option<CatalogKind> {
    let uri = raw.uri.clone().unwrap_or_default();
    if !is_url(&uri) {
        problems.add(
            format!("{at}.uri"),
            format!("expected the REST catalog's http:// or https:// URL, got {uri:?}"),
        );
    }
    if let Some(token_uri) = raw.oauth2_server_uri.as_deref().filter(|u| !is_url(u)) {
        problems.add(
            format!("{at}.oauth2_server_uri"),
            format!("expected an http:// or https:// URL, got {token_uri:?}"),
        );
    }
    let auth = match (&raw.credential, &raw.token) {
        (Some(_), Some(_)) => {
            problems.add(
                format!("{at}.token"),
                "give credential (OAuth2 client credentials, fetched again when they expire) \
                 or token (a fixed bearer token), not both",
            );
            RestAuth::None
        }
        (Some(credential), None) => RestAuth::Credential(credential.clone()),
        (None, Some(token)) => RestAuth::Token(token.clone()),
        (None, None) => RestAuth::None,
    };
    if raw.scope.is_some() && !matches!(auth, RestAuth::Credential(_)) {
        problems.add(
            format!("{at}.scope"),
            "a scope is asked for with credential (OAuth2 client credentials) only",
        );
    }
    Some(CatalogKind::Rest {
        uri: uri.trim_end_matches('/').to_string(),
        auth,
        oauth2_server_uri: raw.oauth2_server_uri.clone(),
        scope: raw.scope.clone(),
    })
}

/// The catalog a table at `at` names: required for an Iceberg table, refused for any other.
pub(crate) fn table_catalog(
    at: &str,
    format: TableFormat,
    named: Option<&str>,
    catalogs: &BTreeMap<String, Catalog>,
    problems: &mut Problems,
) -> Option<Catalog> {
    match (format, named) {
        (TableFormat::Iceberg, None) => {
            problems.add(
                format!("{at}.catalog"),
                "an Iceberg table needs catalog = \"<name>\" of a [catalogs.<name>] section",
            );
            None
        }
        (TableFormat::Iceberg, Some(name)) => {
            let found = catalogs.get(name).cloned();
            if found.is_none() {
                let known: Vec<&str> = catalogs.keys().map(String::as_str).collect();
                problems.add(
                    format!("{at}.catalog"),
                    format!(
                        "no [catalogs.{name}] section (catalogs: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            found
        }
        (_, Some(_)) => {
            problems.add(
                format!("{at}.catalog"),
                "only Iceberg tables (format = \"iceberg\") are registered in a catalog",
            );
            None
        }
        (_, None) => None,
    }
}
