//! SQL over the lake (the Athena/Glue role): the pipeline's tables (Delta, or plain files
//! through DataFusion's listing tables) registered by name in
//! a DataFusion session, and results rendered for people (a table) or tools (CSV, JSON lines).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTableError;
use sluice_lake::evolution::{SchemaChange, schema_history};
use sluice_lake::table::{Existing, open_for_reading};

mod files;
mod iceberg;
pub mod read_only;

/// What went wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A table's location is unusable.
    #[error(transparent)]
    Location(#[from] sluice_lake::LakeError),
    /// The table has no Delta log (nor a plain-files log) yet.
    #[error(
        "table {table} at {uri} does not exist yet (no Delta log, no _sluice/log); has `sluice stream` written to it?"
    )]
    NotCreated {
        /// Table name.
        table: String,
        /// Its location.
        uri: String,
    },
    /// The table could not be opened.
    #[error("table {table} at {uri}: cannot open")]
    Open {
        /// Table name.
        table: String,
        /// Its location.
        uri: String,
        /// The cause.
        source: DeltaTableError,
    },
    /// The table's store did not answer in time.
    #[error("table {table} at {uri}: no answer from its store within {}", humantime::format_duration(*.after))]
    TimedOut {
        /// Table name.
        table: String,
        /// Its location.
        uri: String,
        /// How long it was given.
        after: std::time::Duration,
    },
    /// DataFusion refused or failed the statement.
    #[error("query failed")]
    Sql(#[from] datafusion::error::DataFusionError),
    /// Results could not be rendered.
    #[error("cannot render the results")]
    Render(#[from] arrow::error::ArrowError),
}

/// A table to make queryable: its SQL name and where it lives.
pub use sluice_lake::location::TableLocation;

/// What `sluice tables` shows about one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// SQL name.
    pub name: String,
    /// Location.
    pub uri: String,
    /// `delta`, or the format of a plain-files table.
    pub format: &'static str,
    /// Current Delta version (the latest commit of a plain-files table).
    pub version: u64,
    /// Data files in the current version.
    pub files: usize,
    /// The columns added since the table was created, change by change.
    pub schema_changes: Vec<SchemaChange>,
}

/// How a lake is opened for a session.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opening {
    /// How long opening one table may take (a store that is down would otherwise be retried
    /// for minutes); unbounded when `None`.
    pub table_limit: Option<std::time::Duration>,
    /// Memory the session's queries may hold, in bytes; past it a query fails with
    /// DataFusion's "Resources exhausted" instead of spilling to disk. Unbounded when `None`.
    pub memory_limit: Option<usize>,
}

impl Opening {
    fn session(&self) -> SessionContext {
        let Some(bytes) = self.memory_limit else {
            return deltalake::delta_datafusion::create_session().into_inner();
        };
        let no_spilling = DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(bytes, 1.0)
            .with_disk_manager_builder(no_spilling)
            .build_arc()
            .expect("a runtime without a disk manager builds");
        deltalake::delta_datafusion::DeltaSessionContext::with_runtime_env(runtime).into_inner()
    }
}

/// A DataFusion session with the lake's tables registered.
pub struct Lake {
    ctx: SessionContext,
    summaries: Vec<TableSummary>,
}

impl Lake {
    /// Opens every table and registers it under its name; the first table that cannot be
    /// opened fails the whole.
    pub async fn open(
        tables: &[TableLocation],
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, QueryError> {
        let (lake, mut unavailable) =
            Self::open_available(tables, storage_options, Opening::default()).await;
        match unavailable.is_empty() {
            true => Ok(lake),
            false => Err(unavailable.swap_remove(0).1),
        }
    }

    /// Opens every table it can, as `opening` says, and registers it under its name; returns
    /// the others with why they could not be opened (the console shows those beside the
    /// working ones).
    pub async fn open_available(
        tables: &[TableLocation],
        storage_options: &HashMap<String, String>,
        opening: Opening,
    ) -> (Self, Vec<(TableLocation, QueryError)>) {
        let ctx = opening.session();
        let limit = opening.table_limit;
        let opening = tables.iter().map(|location| {
            let registered = register(&ctx, location, storage_options);
            async move {
                let Some(after) = limit else {
                    return registered.await;
                };
                (tokio::time::timeout(after, registered).await).unwrap_or_else(|_| {
                    Err(QueryError::TimedOut {
                        table: location.name.clone(),
                        uri: location.uri.clone(),
                        after,
                    })
                })
            }
        });
        // All at once: a store that does not answer costs its limit once, not once per table.
        let opened = futures::future::join_all(opening).await;
        let mut summaries = Vec::new();
        let mut unavailable = Vec::new();
        for (location, registered) in tables.iter().zip(opened) {
            match registered {
                Ok(summary) => summaries.push(summary),
                Err(err) => unavailable.push((location.clone(), err)),
            }
        }
        (Self { ctx, summaries }, unavailable)
    }

    /// The registered tables, in the order given.
    pub fn tables(&self) -> &[TableSummary] {
        &self.summaries
    }

    /// The columns of the registered table `name`.
    pub async fn schema_of(&self, name: &str) -> Option<arrow::datatypes::SchemaRef> {
        let provider = self.ctx.table_provider(name).await.ok()?;
        Some(provider.schema())
    }

    /// Runs one SQL statement and collects its results.
    pub async fn sql(&self, statement: &str) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(self.ctx.sql(statement).await?.collect().await?)
    }
}

/// Opens the table at `location` and registers it in `ctx` under its name.
async fn register(
    ctx: &SessionContext,
    TableLocation { name, uri, catalog }: &TableLocation,
    storage_options: &HashMap<String, String>,
) -> Result<TableSummary, QueryError> {
    if let Some(catalog) = catalog {
        return iceberg::register(ctx, name, catalog, storage_options).await;
    }
    let url = sluice_lake::location::table_url(name, uri)?;
    let open_error = |source| QueryError::Open {
        table: name.clone(),
        uri: url.to_string(),
        source,
    };
    let table = match open_for_reading(name, uri, storage_options).await {
        Ok(Existing::Delta(_, table)) => table,
        Ok(Existing::Files(files)) => return files::register(ctx, name, &files).await,
        Err(err) if err.is_not_created() => {
            return Err(QueryError::NotCreated {
                table: name.clone(),
                uri: url.to_string(),
            });
        }
        Err(err) => return Err(err.into()),
    };
    table
        .update_datafusion_session(&ctx.state())
        .map_err(open_error)?;
    let provider = table
        .table_provider()
        .await
        .map_err(|err| open_error(err.into()))?;
    ctx.register_table(name.as_str(), provider)?;
    Ok(TableSummary {
        name: name.clone(),
        uri: url.to_string(),
        format: "delta",
        version: table.version().ok_or_else(|| QueryError::NotCreated {
            table: name.clone(),
            uri: url.to_string(),
        })?,
        files: table.get_file_uris().map_err(open_error)?.count(),
        schema_changes: schema_history(
            table
                .snapshot()
                .map_err(open_error)?
                .metadata()
                .configuration(),
        ),
    })
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A boxed table for people.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Renders results in `format`.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, QueryError> {
    Ok(match format {
        Format::Table => arrow::util::pretty::pretty_format_batches(batches)?.to_string(),
        Format::Csv => {
            let mut out = Vec::new();
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
            drop(writer);
            String::from_utf8(out).expect("the CSV writer writes UTF-8")
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            String::from_utf8(writer.into_inner()).expect("the JSON writer writes UTF-8")
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn sample() -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        vec![batch]
    }

    #[test]
    fn results_render_as_table_csv_and_json_lines() {
        let table = render(&sample(), Format::Table).unwrap();
        assert!(table.contains("| device | n |"), "{table}");
        assert_eq!(
            render(&sample(), Format::Csv).unwrap(),
            "device,n\na,1\nb,2\n"
        );
        assert_eq!(
            render(&sample(), Format::Json).unwrap(),
            "{\"device\":\"a\",\"n\":1}\n{\"device\":\"b\",\"n\":2}\n"
        );
    }

    #[tokio::test]
    async fn a_table_that_was_never_written_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let location = TableLocation {
            name: "t".into(),
            uri: dir.path().join("t").display().to_string(),
            catalog: None,
        };
        let err = Lake::open(&[location], &HashMap::new())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("table t") && err.contains("does not exist yet"),
            "{err}"
        );
    }
}
