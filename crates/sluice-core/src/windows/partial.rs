//! Open fixed windows held as partial aggregates: per window, one group per key, updated by
//! DataFusion's own group accumulators as rows arrive, so state grows with keys, not events.
//!
//! The window query is planned once into DataFusion's physical plan. When that plan is one
//! aggregation over the rows (with only projections above and below it), each batch of rows is
//! fed to the aggregation's group accumulators (`GroupsAccumulator`, or a row `Accumulator`
//! per group through `GroupsAccumulatorAdapter` where an aggregate has no group form), one set
//! per open window; a window that closes is evaluated and the projections above it are run on
//! the result. Any other plan (DataFusion can rewrite `count(distinct x)` into two
//! aggregations, or sort the input for `array_agg(x ORDER BY y)`) keeps the rows of open
//! windows instead ([`super::WindowAggregation::aggregate`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{
    AggregateExec, AggregateInputMode, AggregateOutputMode, aggregate_expressions,
};
use datafusion::physical_plan::projection::ProjectionExec;

use super::WINDOW_START;

/// A projection of the plan: its expressions and its output schema.
#[derive(Debug, Clone)]
struct Projection {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Projection {
    fn of(node: &ProjectionExec) -> Self {
        Self {
            exprs: node.expr().iter().map(|p| Arc::clone(&p.expr)).collect(),
            schema: node.schema(),
        }
    }

    fn run(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let columns = self
            .exprs
            .iter()
            .map(|expr| expr.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// A window query's plan taken apart to run one batch at a time.
#[derive(Debug, Clone)]
pub(super) struct IncrementalPlan {
    /// The columns the plan reads, by name, out of rows carrying their window's bounds.
    scan: SchemaRef,
    /// Projections between the scan and the aggregation, in the order they run.
    below: Vec<Projection>,
    aggregate: Arc<AggregateExec>,
    /// Per aggregate, the expressions its accumulator is updated with.
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// The schema of the group keys (window bounds first).
    groups: SchemaRef,
    /// Projections above the aggregation, in the order they run.
    above: Vec<Projection>,
}

impl IncrementalPlan {
    /// Takes `plan` apart when it is one raw-to-final aggregation with only projections above
    /// and below it; `None` otherwise.
    pub(super) fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let mut above = Vec::new();
        let mut node = Arc::clone(plan);
        let aggregate = loop {
            if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
                above.push(Projection::of(projection));
                node = Arc::clone(projection.input());
            } else if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
                break aggregate.clone();
            } else {
                return None;
            }
        };
        above.reverse();
        let whole = matches!(aggregate.mode().input_mode(), AggregateInputMode::Raw)
            && matches!(aggregate.mode().output_mode(), AggregateOutputMode::Final)
            && !aggregate.group_expr().has_grouping_set();
        if !whole {
            return None;
        }
        let mut below = Vec::new();
        let mut node = Arc::clone(aggregate.input());
        while let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            below.push(Projection::of(projection));
            node = Arc::clone(projection.input());
        }
        if !node.children().is_empty() {
            return None;
        }
        below.reverse();
        let arguments = aggregate_expressions(aggregate.aggr_expr(), aggregate.mode(), 0).ok()?;
        let groups = aggregate
            .group_expr()
            .group_schema(&aggregate.input().schema())
            .ok()?;
        Some(Self {
            scan: node.schema(),
            below,
            aggregate: Arc::new(aggregate),
            arguments,
            groups,
            above,
        })
    }

    /// The aggregation's input for `exploded` (rows carrying their window's bounds).
    fn input(&self, exploded: &RecordBatch) -> Result<RecordBatch, String> {
        let columns = self
            .scan
            .fields()
            .iter()
            .map(|field| {
                exploded
                    .column_by_name(field.name())
                    .cloned()
                    .ok_or_else(|| format!("rows lack the column {}", field.name()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch =
            RecordBatch::try_new(self.scan.clone(), columns).map_err(|e| e.to_string())?;
        for projection in &self.below {
            batch = projection.run(&batch)?;
        }
        Ok(batch)
    }
}

/// One open window's groups: its keys and one accumulator per aggregate.
struct WindowGroups {
    keys: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

impl WindowGroups {
    fn new(plan: &IncrementalPlan) -> Result<Self, String> {
        let keys = new_group_values(plan.groups.clone(), &GroupOrdering::None)
            .map_err(|e| e.to_string())?;
        let accumulators = plan
            .aggregate
            .aggr_expr()
            .iter()
            .map(|expr| {
                if expr.groups_accumulator_supported() {
                    expr.create_groups_accumulator()
                } else {
                    let expr = Arc::clone(expr);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        expr.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>)
                }
            })
            .collect::<datafusion::error::Result<_>>()
            .map_err(|e| e.to_string())?;
        Ok(Self { keys, accumulators })
    }

    /// Adds `input` (the aggregation's input rows, all of this window).
    fn update(&mut self, plan: &IncrementalPlan, input: &RecordBatch) -> Result<(), String> {
        let failed = |e: datafusion::error::DataFusionError| e.to_string();
        let keys = plan
            .aggregate
            .group_expr()
            .expr()
            .iter()
            .map(|(expr, _)| expr.evaluate(input)?.into_array(input.num_rows()))
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(failed)?;
        let mut indices = Vec::with_capacity(input.num_rows());
        self.keys.intern(&keys, &mut indices).map_err(failed)?;
        let total = self.keys.len();
        let filters = plan.aggregate.filter_expr();
        for ((accumulator, arguments), filter) in self
            .accumulators
            .iter_mut()
            .zip(&plan.arguments)
            .zip(filters)
        {
            let values = arguments
                .iter()
                .map(|expr| expr.evaluate(input)?.into_array(input.num_rows()))
                .collect::<datafusion::error::Result<Vec<_>>>()
                .map_err(failed)?;
            let filter = match filter {
                Some(filter) => Some(
                    filter
                        .evaluate(input)
                        .and_then(|v| v.into_array(input.num_rows()))
                        .map_err(failed)?,
                ),
                None => None,
            };
            let filter = filter.as_ref().map(|f| f.as_boolean());
            accumulator
                .update_batch(&values, &indices, filter, total)
                .map_err(failed)?;
        }
        Ok(())
    }

    /// The aggregation's output for this window: its keys and their aggregates.
    fn evaluate(mut self, plan: &IncrementalPlan) -> Result<RecordBatch, String> {
        let failed = |e: datafusion::error::DataFusionError| e.to_string();
        let mut columns = self.keys.emit(EmitTo::All).map_err(failed)?;
        for accumulator in &mut self.accumulators {
            columns.push(accumulator.evaluate(EmitTo::All).map_err(failed)?);
        }
        let mut batch =
            RecordBatch::try_new(plan.aggregate.schema(), columns).map_err(|e| e.to_string())?;
        for projection in &plan.above {
            batch = projection.run(&batch)?;
        }
        Ok(batch)
    }

    fn bytes(&self) -> usize {
        self.keys.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }
}

/// The open fixed windows of one partition, as partial aggregates by window start.
#[derive(Default)]
pub struct OpenAggregates {
    windows: BTreeMap<i64, WindowGroups>,
}

impl std::fmt::Debug for OpenAggregates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAggregates")
            .field("windows", &self.windows.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl OpenAggregates {
    /// Adds `exploded` (rows carrying their window's bounds) to their windows.
    pub(super) fn update(
        &mut self,
        plan: &IncrementalPlan,
        exploded: &RecordBatch,
    ) -> Result<(), String> {
        if exploded.num_rows() == 0 {
            return Ok(());
        }
        let starts = exploded
            .column_by_name(WINDOW_START)
            .ok_or("rows lack their window start")?
            .as_primitive::<TimestampMicrosecondType>();
        for (start, rows) in rows_by_window(starts) {
            let rows = match rows {
                None => exploded.clone(),
                Some(indices) => take_record_batch(exploded, &UInt32Array::from(indices))
                    .map_err(|e| e.to_string())?,
            };
            let groups = match self.windows.entry(start) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(WindowGroups::new(plan)?)
                }
            };
            groups.update(plan, &plan.input(&rows)?)?;
        }
        Ok(())
    }

    /// Evaluates and forgets the windows whose end (`start + size`) is at or before `until`;
    /// their rows of the aggregation's output (before the window table's date and hour).
    pub(super) fn close(
        &mut self,
        plan: &IncrementalPlan,
        size: i64,
        until: i64,
    ) -> Result<Vec<RecordBatch>, String> {
        let still_open = self.windows.split_off(&(until - size + 1));
        let closed = std::mem::replace(&mut self.windows, still_open);
        closed
            .into_values()
            .map(|groups| groups.evaluate(plan))
            .collect()
    }

    /// The start of the oldest open window.
    pub fn oldest_start(&self) -> Option<i64> {
        self.windows.keys().next().copied()
    }

    /// Memory held, as DataFusion's group values and accumulators count it.
    pub fn bytes(&self) -> usize {
        self.windows.values().map(WindowGroups::bytes).sum()
    }
}

/// `starts`'s rows by window start, ascending: `None` when every row has the same start.
fn rows_by_window(starts: &TimestampMicrosecondArray) -> Vec<(i64, Option<Vec<u32>>)> {
    let values = starts.values();
    let first = values[0];
    if values.iter().all(|&start| start == first) {
        return vec![(first, None)];
    }
    let mut by_start: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (row, &start) in values.iter().enumerate() {
        by_start.entry(start).or_default().push(row as u32);
    }
    by_start
        .into_iter()
        .map(|(start, rows)| (start, Some(rows)))
        .collect()
}
