//! `[catalogs.<name>]`: where Iceberg tables are registered, so that engines (Athena, Trino,
//! Spark, pyiceberg) find them by name. A table with `format = "iceberg"` names its catalog.

use std::collections::BTreeMap;

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
    /// Where tables created without a location would go (`s3://…`, `file:///…`).
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
}

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
    if raw.kind != "sql" {
        problems.add(
            format!("{at}.type"),
            format!(
                "expected \"sql\" (a SQLite catalog); the REST and Glue catalogs are \
                 not built yet, got {:?}",
                raw.kind
            ),
        );
    }
    if !raw.uri.starts_with("sqlite:")
        || raw
            .uri
            .trim_start_matches("sqlite:")
            .trim_start_matches('/')
            .is_empty()
    {
        problems.add(
            format!("{at}.uri"),
            format!(
                "expected sqlite:////absolute/path.db or sqlite:relative/path.db (a Postgres \
                 catalog is not built yet), got {:?}",
                raw.uri
            ),
        );
    }
    if raw.warehouse.trim().is_empty() {
        problems.add(
            format!("{at}.warehouse"),
            "expected s3://bucket/path or file:///path",
        );
    }
    let namespace = raw.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    if !super::is_identifier(namespace) {
        problems.add(
            format!("{at}.namespace"),
            format!("expected a name of letters, digits and _, got {namespace:?}"),
        );
    }
    (problems.0.len() == before).then(|| Catalog {
        name: name.to_string(),
        kind: CatalogKind::Sql {
            uri: raw.uri.clone(),
        },
        warehouse: raw.warehouse.clone(),
        namespace: namespace.to_string(),
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
