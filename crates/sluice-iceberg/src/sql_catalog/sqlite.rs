//! A SQL catalog's rows in a SQLite file, through the libsql the embedded broker already links.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use iceberg::{Error, ErrorKind, Result};

use super::SqlRows;

/// How long a statement waits for another process's lock on the file (pyiceberg's, another
/// member's) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A SQLite file.
pub struct SqliteRows {
    path: PathBuf,
    database: libsql::Database,
}

impl std::fmt::Debug for SqliteRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SQLite file {}", self.path.display())
    }
}

fn sql_error(path: &Path) -> impl Fn(libsql::Error) -> Error + '_ {
    move |err| {
        Error::new(
            ErrorKind::Unexpected,
            format!("SQL catalog {}: {err}", path.display()),
        )
    }
}

impl SqliteRows {
    /// Opens (creating when missing) the SQLite file at `path`.
    pub async fn open(path: PathBuf) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("SQL catalog {}: {err}", path.display()),
                )
            })?;
        }
        let database = libsql::Builder::new_local(&path)
            .build()
            .await
            .map_err(sql_error(&path))?;
        Ok(Self { path, database })
    }

    fn connect(&self) -> Result<libsql::Connection> {
        let connection = self.database.connect().map_err(sql_error(&self.path))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(sql_error(&self.path))?;
        Ok(connection)
    }
}

#[async_trait]
impl SqlRows for SqliteRows {
    async fn texts(&self, sql: &str, params: Vec<String>) -> Result<Vec<Option<String>>> {
        let connection = self.connect()?;
        let mut rows = connection
            .query(sql, params)
            .await
            .map_err(sql_error(&self.path))?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().await.map_err(sql_error(&self.path))? {
            found.push(
                row.get::<Option<String>>(0)
                    .map_err(sql_error(&self.path))?,
            );
        }
        Ok(found)
    }

    async fn execute(&self, sql: &str, params: Vec<String>) -> Result<u64> {
        self.connect()?
            .execute(sql, params)
            .await
            .map_err(sql_error(&self.path))
    }
}
