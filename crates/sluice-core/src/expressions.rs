//! SQL expressions of a pipeline (alert rules, filters, derived columns), compiled once by
//! DataFusion against a stream's table schema and evaluated on whole record batches.
//!
//! Compiling checks names and types when the pipeline file is loaded, so `tempreture_c > 85`
//! or `device_id > 3.5` is refused with the field it came from, before anything connects.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::prep_null_mask_filter;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

/// A scalar SQL expression over the rows of one schema.
#[derive(Clone)]
pub struct SqlExpr {
    sql: String,
    data_type: DataType,
    physical: Arc<dyn PhysicalExpr>,
}

impl fmt::Debug for SqlExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlExpr")
            .field("sql", &self.sql)
            .field("data_type", &self.data_type)
            .finish()
    }
}

impl PartialEq for SqlExpr {
    fn eq(&self, other: &Self) -> bool {
        self.sql == other.sql && self.data_type == other.data_type
    }
}

impl SqlExpr {
    /// Parses, type-checks and plans `sql` for batches of `schema`.
    pub fn compile(sql: &str, schema: &SchemaRef) -> Result<Self, String> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
        let context = SessionContext::new();
        let expr = context
            .parse_sql_expr(sql, &df_schema)
            .map_err(|err| format!("{sql:?} is not a valid SQL expression: {}", short(&err)))?;
        let data_type = expr
            .get_type(&df_schema)
            .map_err(|err| format!("{sql:?}: {}", short(&err)))?;
        let physical = context
            .create_physical_expr(expr, &df_schema)
            .map_err(|err| format!("{sql:?}: {}", short(&err)))?;
        Ok(Self {
            sql: sql.to_string(),
            data_type,
            physical,
        })
    }

    /// The expression as written.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The type of its values.
    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }

    /// One value per row of `batch`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, String> {
        self.physical
            .evaluate(batch)
            .and_then(|value| value.into_array(batch.num_rows()))
            .map_err(|err| format!("evaluating {:?}: {}", self.sql, short(&err)))
    }
}

/// A boolean SQL expression: rows where it is true match; false and NULL do not.
#[derive(Debug, Clone)]
pub struct Predicate(SqlExpr);

impl Predicate {
    /// Compiles `sql`, which must be boolean.
    pub fn compile(sql: &str, schema: &SchemaRef) -> Result<Self, String> {
        let expr = SqlExpr::compile(sql, schema)?;
        match expr.data_type() {
            DataType::Boolean => Ok(Self(expr)),
            other => Err(format!(
                "{sql:?} is of type {other}; expected a condition (true or false)"
            )),
        }
    }

    /// The condition as written.
    pub fn sql(&self) -> &str {
        self.0.sql()
    }

    /// Which rows of `batch` match, without NULLs.
    pub fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray, String> {
        let values = self.0.evaluate(batch)?;
        let values = values
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| format!("{:?} did not give booleans", self.sql()))?;
        Ok(if values.null_count() > 0 {
            prep_null_mask_filter(values)
        } else {
            values.clone()
        })
    }
}

/// DataFusion's message without its backtrace-style prefixes ("Error during planning: ").
fn short(err: &datafusion::error::DataFusionError) -> String {
    let text = err.to_string();
    for prefix in ["Error during planning: ", "Schema error: ", "SQL error: "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn sensor() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("temperature_c", DataType::Float64, true),
            Field::new("vibration_g", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(Float64Array::from(vec![
                    Some(90.0),
                    Some(20.0),
                    None,
                    Some(20.0),
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(0.1),
                    Some(0.1),
                    Some(0.1),
                    Some(0.9),
                ])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    #[test]
    fn a_rule_matches_rows_and_null_is_no_match() {
        let (schema, batch) = sensor();
        let rule = Predicate::compile("temperature_c > 85 OR vibration_g > 0.5", &schema).unwrap();
        let matched = rule.matches(&batch).unwrap();
        assert_eq!(matched, BooleanArray::from(vec![true, false, false, true]));
    }

    #[test]
    fn unknown_columns_and_non_conditions_are_refused_with_the_expression() {
        let (schema, _) = sensor();
        let err = Predicate::compile("tempreture_c > 85", &schema).unwrap_err();
        assert!(err.contains("tempreture_c"), "{err}");
        let err = Predicate::compile("temperature_c + 1", &schema).unwrap_err();
        assert!(err.contains("expected a condition"), "{err}");
        let err = Predicate::compile("temperature_c >", &schema).unwrap_err();
        assert!(err.contains("not a valid SQL expression"), "{err}");
    }

    #[test]
    fn a_derived_value_is_computed_per_row() {
        let (schema, batch) = sensor();
        let expr = SqlExpr::compile("round(temperature_c * 9 / 5 + 32)", &schema).unwrap();
        assert_eq!(expr.data_type(), &DataType::Float64);
        let values = expr.evaluate(&batch).unwrap();
        let values = values.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(values.value(0), 194.0);
        assert!(values.is_null(2));
    }
}
