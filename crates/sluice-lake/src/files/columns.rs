//! The columns of a plain-files table grow as a Delta table's do. Rows carrying a column the
//! table lacks (a newer writer's field, or one the stream's schema file gained) append it to
//! the table's columns, and the next log entry records the columns and the change. Objects
//! being encoded with fewer columns are finished as they are, and new ones are begun for the
//! rows after. So an object's columns are always the first ones of the table's, which readers
//! by name (Parquet, JSON Lines) and by position (CSV: Athena's OpenCSVSerde, DataFusion with
//! truncated rows) both read as null where an older object lacks a column.
//!
//! Another writer's added columns come with its entry. They are taken before this writer's
//! entry is written, so the log's columns only grow. When they come before columns this writer
//! added itself, its CSV objects would put values under the wrong header for a reader by
//! position: that commit is refused, transiently, and its rows are encoded again.

use std::sync::Arc;

use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use deltalake::DeltaTableError;
use sluice_core::config::FileKind;

use super::FilesSink;
use super::log::TableInfo;
use crate::LakeError;
use crate::evolution::SchemaChange;

/// The columns of `ours` that `logged` records with another type, one line each.
fn retyped(logged: &TableInfo, ours: &[&FieldRef]) -> String {
    (ours.iter())
        .filter_map(|field| {
            let (_, theirs) = (logged.columns.iter()).find(|(name, _)| name == field.name())?;
            let ty = field.data_type().to_string();
            (*theirs != ty).then(|| {
                let name = field.name();
                format!("\n  - column {name} is {theirs} in the table, the pipeline writes {ty}")
            })
        })
        .collect()
}

impl FilesSink {
    /// Makes the table's columns those `logged` records (the latest entry's), then those of
    /// `more` it lacks, appended as one change. Objects being encoded keep the columns they
    /// were begun with. A column this writer has (or `more` has) with another type than the
    /// log's is refused, naming it.
    pub(super) fn adopt_columns(
        &mut self,
        logged: &TableInfo,
        more: &[FieldRef],
    ) -> Result<(), LakeError> {
        let ours: Vec<&FieldRef> = (self.object_schema.fields().iter())
            .chain(
                more.iter()
                    .filter(|f| self.object_schema.field_with_name(f.name()).is_err()),
            )
            .collect();
        LakeError::schema_mismatch(&self.name, &self.url, retyped(logged, &ours))?;
        let mut info = logged.clone();
        let lacking: Vec<&FieldRef> = (more.iter())
            .filter(|field| !info.columns.iter().any(|(name, _)| name == field.name()))
            .collect();
        if !lacking.is_empty() {
            let change = SchemaChange::adding(lacking.iter().copied());
            info.columns.extend(change.added.iter().cloned());
            info.changes.push(change);
        }
        let logged_fields = (info.fields()).map_err(|reason| LakeError::SchemaMismatch {
            table: self.name.clone(),
            uri: self.url.to_string(),
            differences: format!("\n  - {reason}"),
        })?;
        // A column this writer knows keeps its own field (a list's item name, say; a stream
        // column's nullability); the others take the type the log records, nullable.
        let known = |name: &str| ours.iter().find(|field| field.name() == name).copied();
        let fields: Vec<FieldRef> = (logged_fields.into_iter())
            .map(|field| {
                known(field.name())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(field))
            })
            .collect();
        self.object_schema = Arc::new(Schema::new(fields));
        self.info = info;
        Ok(())
    }

    /// Refuses, transiently, to commit CSV objects of `schemas` whose columns are not the first
    /// ones of the table's (another writer added other columns before this one's).
    pub(super) fn check_csv_columns<'s>(
        &self,
        mut schemas: impl Iterator<Item = &'s SchemaRef>,
    ) -> Result<(), LakeError> {
        if self.format.kind != FileKind::Csv {
            return Ok(());
        }
        let table: Vec<&String> = self.info.columns.iter().map(|(name, _)| name).collect();
        let misplaced = schemas.find(|schema| {
            let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
            !table.starts_with(&names)
        });
        match misplaced {
            None => Ok(()),
            Some(schema) => Err(self.write_error()(DeltaTableError::generic(format!(
                "another writer added columns meanwhile: CSV objects of columns {:?} would \
                 not line up with the table's {:?}; the rows are encoded again",
                schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>(),
                table
            )))),
        }
    }

    /// The columns of `rows` the table lacks (partition columns aside), nullable.
    pub(super) fn new_columns(&self, rows: &Schema) -> Vec<FieldRef> {
        (rows.fields().iter())
            .filter(|field| {
                !self.partition_by.contains(field.name())
                    && self.object_schema.field_with_name(field.name()).is_err()
            })
            .map(|field| Arc::new(Field::clone(field).with_nullable(true)))
            .collect()
    }
}
