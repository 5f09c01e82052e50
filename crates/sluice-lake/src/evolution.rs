//! Tables that gain columns: rows carrying a column the Delta table lacks (a field added to the
//! stream's schema file as optional, or learned from a newer writer schema) are written with it,
//! and the commit that adds them also changes the table's schema (a `metaData` action in the
//! same Delta commit, so rows and columns appear together). Rows without a column the table has
//! (written by an older pipeline, or before the change) hold null there. Columns are only ever
//! added, nullable; a column whose type changes is refused (`check_layout`). Each change is
//! recorded in the table property [`HISTORY_PROPERTY`], which `sluice tables` shows. Iceberg
//! tables (sluice-iceberg) keep their changes in the same property and conform rows the same
//! way ([`conform`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use deltalake::DeltaTableError;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow as _, TryIntoKernel as _};
use deltalake::kernel::{Action, MetadataExt as _, StructType};
use deltalake::writer::RecordBatchWriter;
use serde::{Deserialize, Serialize};

use crate::{LakeError, LakeTable};

/// The table property holding the table's schema changes, as a JSON list of [`SchemaChange`].
pub const HISTORY_PROPERTY: &str = "sluice.schema.history";

/// One change of a table's columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChange {
    /// When it was committed, in ms since the epoch.
    pub at_ms: i64,
    /// The columns added, as (name, Arrow type).
    pub added: Vec<(String, String)>,
}

impl SchemaChange {
    /// A change made now, adding `fields`.
    pub fn adding<'f>(fields: impl IntoIterator<Item = &'f FieldRef>) -> Self {
        Self {
            at_ms: chrono::Utc::now().timestamp_millis(),
            added: (fields.into_iter())
                .map(|field| (field.name().clone(), field.data_type().to_string()))
                .collect(),
        }
    }
}

/// The value of [`HISTORY_PROPERTY`] with `change` appended to the changes `configuration`
/// records.
pub fn history_with(
    configuration: &std::collections::HashMap<String, String>,
    change: SchemaChange,
) -> String {
    let mut history = schema_history(configuration);
    history.push(change);
    serde_json::to_string(&history).expect("a list of changes encodes")
}

/// The schema changes a table's properties record, oldest first.
pub fn schema_history(
    configuration: &std::collections::HashMap<String, String>,
) -> Vec<SchemaChange> {
    (configuration.get(HISTORY_PROPERTY))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// The columns rows are written with: the table's, then those of the rows it lacks.
pub(crate) struct WritingSchema {
    /// All of them.
    pub schema: SchemaRef,
    /// The ones the table lacks (empty: no schema change).
    pub added: Vec<FieldRef>,
}

impl LakeTable {
    /// Rows that do not fit the table's columns (a column whose type changed): retrying would
    /// not help, so it is a schema mismatch, not a write error.
    pub(crate) fn rows_mismatch(&self, err: ArrowError) -> LakeError {
        LakeError::SchemaMismatch {
            table: self.name.clone(),
            uri: self.url.to_string(),
            differences: format!("\n  - {err}"),
        }
    }

    /// The table's columns as Arrow.
    pub(crate) fn arrow_schema(&self) -> Result<SchemaRef, LakeError> {
        let schema: Schema = self
            .snapshot()
            .schema()
            .as_ref()
            .try_into_arrow()
            .map_err(|err: ArrowError| self.write_error()(err.into()))?;
        Ok(Arc::new(schema))
    }

    /// The columns to write `batches` with: the table's (typed as the batches have them, which
    /// may name nested fields otherwise), then the columns of the batches that the table
    /// lacks, nullable, in the order the batches have them.
    pub(crate) fn writing_schema(
        &self,
        batches: &[RecordBatch],
    ) -> Result<WritingSchema, LakeError> {
        let table = self.arrow_schema()?;
        let as_written = |name: &str| {
            (batches.iter()).find_map(|batch| batch.schema().field_with_name(name).ok().cloned())
        };
        let mut added: Vec<FieldRef> = Vec::new();
        for batch in batches {
            for field in batch.schema().fields() {
                let known = table.field_with_name(field.name()).is_ok()
                    || added.iter().any(|a| a.name() == field.name());
                if !known {
                    added.push(Arc::new(field.as_ref().clone().with_nullable(true)));
                }
            }
        }
        if added.is_empty() {
            return Ok(WritingSchema {
                schema: table,
                added,
            });
        }
        let fields: Vec<FieldRef> = (table.fields().iter())
            .map(|field| as_written(field.name()).map_or_else(|| field.clone(), Arc::new))
            .chain(added.iter().cloned())
            .collect();
        Ok(WritingSchema {
            schema: Arc::new(Schema::new(fields)),
            added,
        })
    }

    /// A writer of this table's files with `writing`'s columns.
    pub(crate) fn file_writer(
        &self,
        writing: &WritingSchema,
    ) -> Result<RecordBatchWriter, DeltaTableError> {
        if writing.added.is_empty() {
            return RecordBatchWriter::for_table(&self.table);
        }
        RecordBatchWriter::try_new(
            self.url.as_str(),
            writing.schema.clone(),
            Some(self.partition_by.clone()),
            Some(self.storage_options.clone()),
        )
    }

    /// The `metaData` action of a commit adding `writing`'s new columns to the table as it is
    /// now (another writer may have added columns since `writing` was decided: they stay), with
    /// the change appended to [`HISTORY_PROPERTY`].
    pub(crate) fn schema_change(&self, writing: &WritingSchema) -> Result<Action, LakeError> {
        let failed = |err: DeltaTableError| LakeError::Commit {
            table: self.name.clone(),
            source: err,
        };
        let now = self.arrow_schema()?;
        let added: Vec<FieldRef> = (writing.added.iter())
            .filter(|field| now.field_with_name(field.name()).is_err())
            .cloned()
            .collect();
        let wider = Schema::new(
            (now.fields().iter().cloned())
                .chain(added.iter().cloned())
                .collect::<Vec<_>>(),
        );
        let columns: StructType = (&wider)
            .try_into_kernel()
            .map_err(|err: ArrowError| failed(err.into()))?;
        let current = self.snapshot().metadata().clone();
        let history = history_with(current.configuration(), SchemaChange::adding(&added));
        let metadata = current
            .with_schema(&columns)
            .and_then(|metadata| metadata.add_config_key(HISTORY_PROPERTY.into(), history))
            .map_err(|err| failed(err.into()))?;
        Ok(Action::Metadata(metadata))
    }
}

/// `batch` with exactly the columns of `schema`, by name: a column it lacks is null. Its
/// columns must all be among them, with their types (nested fields may be named otherwise:
/// such a column is kept as it is, and the Delta writer takes it as it always did).
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    if let Some(extra) =
        (batch.schema().fields().iter()).find(|f| schema.field_with_name(f.name()).is_err())
    {
        return Err(ArrowError::SchemaError(format!(
            "column {} is not among the columns being written",
            extra.name()
        )));
    }
    let batch_schema = batch.schema();
    let (fields, columns): (Vec<FieldRef>, Vec<ArrayRef>) = (schema.fields().iter())
        .map(|field| match batch_schema.column_with_name(field.name()) {
            Some((index, found)) if found.data_type().equals_datatype(field.data_type()) => Ok((
                batch_schema.fields()[index].clone(),
                batch.column(index).clone(),
            )),
            Some((_, found)) => Err(ArrowError::SchemaError(format!(
                "column {} is {} in the rows, {} in the table",
                field.name(),
                found.data_type(),
                field.data_type()
            ))),
            None => Ok((
                Arc::new(field.as_ref().clone().with_nullable(true)),
                new_null_array(field.data_type(), batch.num_rows()),
            )),
        })
        .collect::<Result<Vec<_>, ArrowError>>()?
        .into_iter()
        .unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
