//! Cutting rows into session windows: per key, events sorted by event time, a new session
//! wherever the next event is the gap or more after the one before. A session runs from its
//! first event to a gap after its last, so two sessions of a key never overlap and an event
//! exactly a gap after another starts a new one.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::row::{RowConverter, Rows, SortField};

/// A session's (start, end) in microseconds.
type Bounds = (i64, i64);

/// Per batch and row of `rows`, the bounds of its session; `None` for a row without an event
/// time.
pub(super) fn bounds(
    rows: &[RecordBatch],
    keys: &[String],
    event_time: &str,
    gap: i64,
) -> Result<Vec<Vec<Option<Bounds>>>, String> {
    let keyed = key_rows(rows, keys)?;
    let same_key = |a: &(usize, usize, i64), b: &(usize, usize, i64)| match &keyed {
        Some(keyed) => keyed[a.0].row(a.1) == keyed[b.0].row(b.1),
        None => true,
    };
    let mut events: Vec<(usize, usize, i64)> = Vec::new();
    for (index, batch) in rows.iter().enumerate() {
        let times = batch
            .column_by_name(event_time)
            .ok_or("rows lack the event-time column")?
            .as_primitive::<TimestampMicrosecondType>();
        events.extend(
            times
                .iter()
                .enumerate()
                .filter_map(|(row, t)| Some((index, row, t?))),
        );
    }
    events.sort_unstable_by(|a, b| {
        let by_key = match &keyed {
            Some(keyed) => keyed[a.0].row(a.1).cmp(&keyed[b.0].row(b.1)),
            None => std::cmp::Ordering::Equal,
        };
        by_key.then(a.2.cmp(&b.2))
    });
    let mut bounds: Vec<Vec<Option<Bounds>>> =
        rows.iter().map(|b| vec![None; b.num_rows()]).collect();
    let mut first = 0;
    while first < events.len() {
        let mut last = first;
        while last + 1 < events.len()
            && same_key(&events[last], &events[last + 1])
            && events[last + 1].2 - events[last].2 < gap
        {
            last += 1;
        }
        let session = (events[first].2, events[last].2 + gap);
        for &(batch, row, _) in &events[first..=last] {
            bounds[batch][row] = Some(session);
        }
        first = last + 1;
    }
    Ok(bounds)
}

/// The key columns of each batch as comparable rows; `None` without keys (one session line).
fn key_rows(rows: &[RecordBatch], keys: &[String]) -> Result<Option<Vec<Rows>>, String> {
    let Some(first) = rows.first().filter(|_| !keys.is_empty()) else {
        return Ok(None);
    };
    let fields = keys
        .iter()
        .map(|key| {
            let column = first
                .column_by_name(key)
                .ok_or_else(|| format!("rows lack the key column {key:?}"))?;
            Ok(SortField::new(column.data_type().clone()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
    let mut keyed = Vec::with_capacity(rows.len());
    for batch in rows {
        let columns = keys
            .iter()
            .map(|key| batch.column_by_name(key).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or("rows lack a key column")?;
        keyed.push(
            converter
                .convert_columns(&columns)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(Some(keyed))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::schema::utc_micros;

    fn batch(events: &[(&str, Option<i64>)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("ts", utc_micros(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.0))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter(events.iter().map(|e| e.1))
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn sessions_are_cut_per_key_at_the_gap_across_batches() {
        let rows = [
            batch(&[("a", Some(10)), ("b", Some(12)), ("a", Some(1))]),
            batch(&[
                ("a", Some(19)),
                ("a", Some(29)),
                ("b", None),
                ("b", Some(22)),
            ]),
        ];
        let got = bounds(&rows, &["k".to_string()], "ts", 10).unwrap();
        // a: 1, 10, 19 are each less than 10 apart; 29 is exactly 10 after 19: a new session.
        // b: 12 and 22 are 10 apart: two sessions.
        assert_eq!(
            got,
            [
                vec![Some((1, 29)), Some((12, 22)), Some((1, 29))],
                vec![Some((1, 29)), Some((29, 39)), None, Some((22, 32))],
            ]
        );
        let one_line = bounds(&rows, &[], "ts", 10).unwrap();
        assert_eq!(one_line[1][1], Some((1, 39)));
    }
}
