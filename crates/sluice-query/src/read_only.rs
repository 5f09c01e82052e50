//! SQL for people who may look but not touch (the console's editor): statements that would
//! write, define or change the session are refused before anything runs; a query runs under a
//! time limit (planning included, so listing a slow store counts) and stops reading after a row
//! cap. Dropping the result stream on either limit cancels DataFusion's work.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use futures::StreamExt;

use crate::Lake;

/// How far one query may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Planning and execution together.
    pub timeout: Duration,
    /// Rows read before the rest is left unread.
    pub rows: usize,
}

/// The rows of a query, up to the cap.
#[derive(Debug)]
pub struct Rows {
    /// The result's columns.
    pub schema: SchemaRef,
    /// The rows, at most the cap.
    pub batches: Vec<RecordBatch>,
    /// Whether more rows were left unread.
    pub truncated: bool,
    /// Planning and execution time.
    pub elapsed: Duration,
}

/// Why a query gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum ReadOnlyError {
    /// The statement would write, define something or change the session.
    #[error("read-only console: {0}")]
    Refused(String),
    /// DataFusion could not plan or run it (its own message).
    #[error("{0}")]
    Sql(DataFusionError),
    /// It ran past the time limit and was cancelled.
    #[error(
        "cancelled after {} (the console's SQL time limit, --sql-timeout)",
        humantime::format_duration(*.0)
    )]
    Timeout(Duration),
}

impl Lake {
    /// Runs one read-only statement within `limits`.
    pub async fn read_only(&self, statement: &str, limits: Limits) -> Result<Rows, ReadOnlyError> {
        let started = Instant::now();
        let run = self.read_capped(statement, limits.rows);
        let (schema, batches, truncated) = tokio::time::timeout(limits.timeout, run)
            .await
            .map_err(|_| ReadOnlyError::Timeout(limits.timeout))??;
        Ok(Rows {
            schema,
            batches,
            truncated,
            elapsed: started.elapsed(),
        })
    }

    async fn read_capped(
        &self,
        statement: &str,
        cap: usize,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, bool), ReadOnlyError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self
            .ctx
            .sql_with_options(statement, options)
            .await
            .map_err(refused_or_sql)?;
        let mut stream = frame.execute_stream().await.map_err(ReadOnlyError::Sql)?;
        let schema = stream.schema();
        let (mut batches, mut rows) = (Vec::new(), 0);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(ReadOnlyError::Sql)?;
            if rows + batch.num_rows() > cap {
                batches.push(batch.slice(0, cap - rows));
                return Ok((schema, batches, true));
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok((schema, batches, false))
    }
}

/// A plan the read-only options refused, told apart from other SQL errors.
fn refused_or_sql(err: DataFusionError) -> ReadOnlyError {
    let refused = [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ];
    match err.find_root() {
        DataFusionError::Plan(message) if refused.iter().any(|r| message.starts_with(r)) => {
            ReadOnlyError::Refused(message.clone())
        }
        _ => ReadOnlyError::Sql(err),
    }
}

#[cfg(test)]
mod tests;
