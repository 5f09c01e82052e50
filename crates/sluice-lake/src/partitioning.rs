//! Splitting a commit's rows by table partition (date/hour), so that the files are written one
//! partition at a time.
//!
//! delta-rs's `RecordBatchWriter` keeps a Parquet writer open for every partition it has seen
//! until it is flushed, and each open writer holds a zstd context per column and a dictionary
//! interner per column: with 48 hour partitions in one commit that was about 72 MB
//! (BENCHMARKS.md). Writing partition by partition keeps one writer open. Rows are numbered by
//! partition once; each partition's rows are then picked from the buffered batches as it is
//! written (a filter per partition and batch), so no second copy of the whole commit is held.

use std::collections::HashMap;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::eq;
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};

/// The rows of a commit numbered by table partition.
pub(crate) struct Partitions {
    /// For each batch, the partition number of each row.
    pub numbers: Vec<UInt32Array>,
    /// For each partition, where its first row is: (batch, row). Its partition values are read
    /// there.
    pub firsts: Vec<(usize, usize)>,
    /// For each batch, the highest partition number among its rows (`None` when it has none):
    /// once that partition is written, the batch is no longer needed.
    pub last_needed_by: Vec<Option<u32>>,
}

/// Numbers the rows of `batches` by their values in `columns` (the table's partition columns).
/// Rows arrive mostly in runs of one partition (one hour of event time after another), so a row
/// is compared with the one before it and looked up only when it differs.
pub(crate) fn partition_numbers(
    batches: &[RecordBatch],
    columns: &[String],
) -> Result<Partitions, ArrowError> {
    let mut numbers = Vec::with_capacity(batches.len());
    let mut firsts = Vec::new();
    if columns.is_empty() {
        for (index, batch) in batches.iter().enumerate() {
            if firsts.is_empty() && batch.num_rows() > 0 {
                firsts.push((index, 0));
            }
            numbers.push(UInt32Array::from(vec![0; batch.num_rows()]));
        }
        let last_needed_by = batches
            .iter()
            .map(|b| (b.num_rows() > 0).then_some(0))
            .collect();
        return Ok(Partitions {
            numbers,
            firsts,
            last_needed_by,
        });
    }
    let mut seen: HashMap<Box<[u8]>, u32> = HashMap::new();
    let mut converter: Option<RowConverter> = None;
    let mut previous: Option<(Box<[u8]>, u32)> = None;
    let mut last_needed_by = Vec::with_capacity(batches.len());
    for (index, batch) in batches.iter().enumerate() {
        let keys = columns
            .iter()
            .map(|name| {
                batch.column_by_name(name).cloned().ok_or_else(|| {
                    ArrowError::SchemaError(format!("no partition column {name} in the rows"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let converter = match &mut converter {
            Some(converter) => converter,
            None => converter.insert(RowConverter::new(
                keys.iter()
                    .map(|key| SortField::new(key.data_type().clone()))
                    .collect(),
            )?),
        };
        let rows = converter.convert_columns(&keys)?;
        let mut batch_numbers = Vec::with_capacity(batch.num_rows());
        for (row_index, row) in rows.iter().enumerate() {
            let number = match &previous {
                Some((bytes, number)) if **bytes == *row.as_ref() => *number,
                _ => {
                    let next = seen.len() as u32;
                    let number = *seen.entry(row.as_ref().into()).or_insert(next);
                    if number == next {
                        firsts.push((index, row_index));
                    }
                    previous = Some((row.as_ref().into(), number));
                    number
                }
            };
            batch_numbers.push(number);
        }
        last_needed_by.push(batch_numbers.iter().max().copied());
        numbers.push(UInt32Array::from(batch_numbers));
    }
    Ok(Partitions {
        numbers,
        firsts,
        last_needed_by,
    })
}

/// The rows of `batch` in partition `number` (`numbers`: its rows' partition numbers): the
/// whole batch when it holds nothing else, `None` when it holds none.
pub(crate) fn rows_of_partition(
    batch: &RecordBatch,
    numbers: &UInt32Array,
    number: u32,
) -> Result<Option<RecordBatch>, ArrowError> {
    let mask = eq(numbers, &UInt32Array::new_scalar(number))?;
    match mask.true_count() {
        0 => Ok(None),
        n if n == batch.num_rows() => Ok(Some(batch.clone())),
        _ => filter_record_batch(batch, &mask).map(Some),
    }
}

/// The rows of one `batch` split by its values in `columns`: per partition, the index of its
/// first row (where its partition values are read) and its rows.
pub(crate) fn split_by_partition(
    batch: &RecordBatch,
    columns: &[String],
) -> Result<Vec<(usize, RecordBatch)>, ArrowError> {
    let partitions = partition_numbers(std::slice::from_ref(batch), columns)?;
    (partitions.firsts.iter().enumerate())
        .map(|(number, &(_, row))| {
            let rows = rows_of_partition(batch, &partitions.numbers[0], number as u32)?
                .expect("a partition holds its first row");
            Ok((row, rows))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(hours: &[i32], offsets: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("hour", DataType::Int32, true),
            Field::new("_offset", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(hours.to_vec())),
                Arc::new(Int64Array::from(offsets.to_vec())),
            ],
        )
        .unwrap()
    }

    /// The offsets of partition `number`'s rows, batch after batch.
    fn offsets_of(batches: &[RecordBatch], partitions: &Partitions, number: u32) -> Vec<i64> {
        batches
            .iter()
            .zip(&partitions.numbers)
            .filter_map(|(batch, numbers)| rows_of_partition(batch, numbers, number).unwrap())
            .flat_map(|b| {
                b.column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn every_row_lands_in_exactly_one_partition_in_its_original_order() {
        let batches = [batch(&[3, 1, 3, 2], &[0, 1, 2, 3]), batch(&[1, 1], &[4, 5])];
        let columns = ["hour".to_string()];
        let partitions = partition_numbers(&batches, &columns).unwrap();
        assert_eq!(partitions.firsts, [(0, 0), (0, 1), (0, 3)]);
        assert_eq!(partitions.last_needed_by, [Some(2), Some(1)]);
        let split: Vec<Vec<i64>> = (0..3)
            .map(|p| offsets_of(&batches, &partitions, p))
            .collect();
        assert_eq!(split, [vec![0, 2], vec![1, 4, 5], vec![3]]);
    }

    #[test]
    fn without_partition_columns_everything_is_one_partition() {
        let batches = [batch(&[], &[]), batch(&[3, 1], &[0, 1])];
        let partitions = partition_numbers(&batches, &[]).unwrap();
        assert_eq!(partitions.firsts, [(1, 0)]);
        assert_eq!(partitions.last_needed_by, [None, Some(0)]);
        assert!(
            partition_numbers(&batches[..1], &[])
                .unwrap()
                .firsts
                .is_empty()
        );
        assert_eq!(offsets_of(&batches, &partitions, 0), [0, 1]);
    }
}
