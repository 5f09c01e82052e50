//! The console's SQL: each query opens the lake afresh (so it sees the latest commits; a table
//! that cannot be opened is left out and named in the error of a query that needs it) and runs
//! read-only within the limits. At most [`RUNNING`] queries run at once on the console's
//! runtime; another one is told to wait.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sluice_query::read_only::{Limits, ReadOnlyError, Rows};
use sluice_query::{Format, Lake, Opening, TableLocation, render};
use tokio::sync::Semaphore;

use crate::tables::TABLE_LIMIT;

/// Queries run at once.
const RUNNING: usize = 2;

/// A query as the page sends it.
#[derive(Deserialize)]
pub(crate) struct Query {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

/// A column of a result.
#[derive(Serialize)]
struct ColumnOut {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
}

/// How a query went: a status, and a JSON or CSV body.
pub(crate) enum Answer {
    Json(StatusCode, serde_json::Value),
    Csv(String),
}

/// Runs the page's queries.
pub(crate) struct Sql {
    locations: Vec<TableLocation>,
    storage_options: HashMap<String, String>,
    limits: Limits,
    opening: Opening,
    running: Semaphore,
}

impl Sql {
    pub(crate) fn new(
        locations: Vec<TableLocation>,
        storage_options: HashMap<String, String>,
        limits: Limits,
        memory: usize,
    ) -> Self {
        Self {
            locations,
            storage_options,
            limits,
            opening: Opening {
                table_limit: Some(TABLE_LIMIT),
                memory_limit: Some(memory),
            },
            running: Semaphore::new(RUNNING),
        }
    }

    /// Runs `query` and answers it for the page.
    pub(crate) async fn run(&self, query: Query) -> Answer {
        let Ok(_slot) = self.running.try_acquire() else {
            let message = format!("{RUNNING} queries are running; try again when one ends");
            return error(StatusCode::TOO_MANY_REQUESTS, "busy", message);
        };
        let (lake, unavailable) =
            Lake::open_available(&self.locations, &self.storage_options, self.opening).await;
        let rows = match lake.read_only(&query.sql, self.limits).await {
            Ok(rows) => rows,
            Err(err @ ReadOnlyError::Refused(_)) => {
                return error(StatusCode::BAD_REQUEST, "refused", err.to_string());
            }
            Err(err @ ReadOnlyError::Timeout(_)) => {
                // Not 408: browsers send a POST again on 408, which would run it again.
                return error(StatusCode::GATEWAY_TIMEOUT, "timeout", err.to_string());
            }
            Err(ReadOnlyError::Sql(err)) => {
                let mut message = err.to_string();
                for (location, why) in &unavailable {
                    message.push_str(&format!(
                        "\n(table {} could not be opened: {why})",
                        location.name
                    ));
                }
                return error(StatusCode::BAD_REQUEST, "sql", message);
            }
        };
        let answer = match query.format.as_deref() {
            Some("csv") => (render(&rows.batches, Format::Csv).map(Answer::Csv))
                .map_err(|err| format!("{:#}", anyhow::Error::new(err))),
            _ => (json(&rows).map(|json| Answer::Json(StatusCode::OK, json)))
                .map_err(|err| err.to_string()),
        };
        answer.unwrap_or_else(|err| error(StatusCode::INTERNAL_SERVER_ERROR, "render", err))
    }
}

fn error(status: StatusCode, kind: &str, message: String) -> Answer {
    Answer::Json(status, serde_json::json!({"kind": kind, "error": message}))
}

/// The rows as the page reads them: columns with their Arrow types, and one object per row
/// (nulls written out).
fn json(rows: &Rows) -> Result<serde_json::Value, arrow::error::ArrowError> {
    let columns: Vec<ColumnOut> = (rows.schema.fields().iter())
        .map(|field| ColumnOut {
            name: field.name().clone(),
            data_type: field.data_type().to_string(),
        })
        .collect();
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    let batches: Vec<&RecordBatch> = rows.batches.iter().collect();
    writer.write_batches(&batches)?;
    writer.finish()?;
    let written = writer.into_inner();
    let values: serde_json::Value = match written.is_empty() {
        true => serde_json::Value::Array(Vec::new()),
        false => serde_json::from_slice(&written).expect("arrow writes JSON"),
    };
    Ok(serde_json::json!({
        "columns": columns,
        "rows": values,
        "truncated": rows.truncated,
        "elapsed_ms": rows.elapsed.as_millis() as u64,
    }))
}
