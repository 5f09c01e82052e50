//! Windows: which events they hold, and partial aggregates against the query over all rows.

use super::*;

const MIN: i64 = 60_000_000;

#[test]
fn tumbling_and_hopping_windows_hold_the_right_events() {
    let tumble = WindowKind::Tumble { size_us: MIN };
    assert_eq!(tumble.starts(90_000_000).collect::<Vec<_>>(), [MIN]);
    assert_eq!(tumble.last_end(90_000_000), 2 * MIN);
    assert_eq!(tumble.starts(-1).collect::<Vec<_>>(), [-MIN]);
    let hop = WindowKind::Hop {
        size_us: 5 * MIN,
        slide_us: MIN,
    };
    assert_eq!(
        hop.starts(5 * MIN + 1).collect::<Vec<_>>(),
        [MIN, 2 * MIN, 3 * MIN, 4 * MIN, 5 * MIN]
    );
    assert_eq!(hop.last_end(5 * MIN + 1), 10 * MIN);
}

#[tokio::test]
async fn open_windows_keep_and_closing_windows_copy_only_the_columns_they_need() {
    use arrow::array::{Float64Array, StringArray};
    let input = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("ts", utc_micros(), true),
        Field::new("temperature_c", DataType::Float64, true),
        Field::new("site", DataType::Utf8, true),
    ]));
    let aggregates = [
        ("n".to_string(), "count(*)".to_string()),
        ("avg_temp".to_string(), "avg(temperature_c)".to_string()),
    ];
    let kind = WindowKind::Tumble { size_us: MIN };
    let windows =
        WindowAggregation::compile(kind, &input, "ts", &["device_id".into()], &aggregates).unwrap();
    let read: Vec<&str> = windows
        .input_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        read,
        ["device_id", "temperature_c", WINDOW_START, WINDOW_END]
    );
    let rows = RecordBatch::try_new(
        input,
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            Arc::new(TimestampMicrosecondArray::from(vec![1, 2, MIN + 1]).with_timezone("UTC")),
            Arc::new(Float64Array::from(vec![10.0, 20.0, 30.0])),
            Arc::new(StringArray::from(vec!["north", "south", "north"])),
        ],
    )
    .unwrap();
    let kept = windows.keep(&rows);
    let kept_names: Vec<&str> = kept
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(kept_names, ["device_id", "ts", "temperature_c"]);
    let floors = Int64Array::from(vec![i64::MIN; 3]);
    let closed = windows
        .aggregate(&[kept], &[floors], None, MIN)
        .await
        .unwrap();
    let closed = arrow::compute::sort_to_indices(closed.column(2), None, None)
        .map(|order| take_record_batch(&closed, &order).unwrap())
        .unwrap();
    let devices = closed
        .column_by_name("device_id")
        .unwrap()
        .as_string::<i32>();
    let averages = closed
        .column_by_name("avg_temp")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(devices.iter().collect::<Vec<_>>(), [Some("a"), Some("b")]);
    assert_eq!(averages.values().to_vec(), [10.0, 20.0]);
}

/// Rows of `n` events over three devices and a few minutes, some temperatures missing.
fn sensor_rows(n: usize) -> (SchemaRef, RecordBatch) {
    use arrow::array::{Float64Array, StringArray};
    let input = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("ts", utc_micros(), true),
        Field::new("temperature_c", DataType::Float64, true),
    ]));
    let devices: Vec<String> = (0..n).map(|i| format!("d{}", i % 3)).collect();
    let times: Vec<i64> = (0..n as i64).map(|i| (i * 7_919_000) % (4 * MIN)).collect();
    let temperatures: Vec<Option<f64>> = (0..n)
        .map(|i| (i % 5 != 0).then_some((i % 17) as f64 - 3.5))
        .collect();
    let rows = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(devices)),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            Arc::new(Float64Array::from(temperatures)),
        ],
    )
    .unwrap();
    (input, rows)
}

/// `batch`'s rows as sorted text, to compare results whatever their order.
fn sorted_lines(batch: &RecordBatch) -> Vec<String> {
    let text = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = text.lines().skip(3).map(str::to_string).collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn partial_aggregates_fed_batch_by_batch_equal_the_query_over_all_rows() {
    let (input, rows) = sensor_rows(200);
    let kinds = [
        WindowKind::Tumble { size_us: MIN },
        WindowKind::Hop {
            size_us: 2 * MIN,
            slide_us: MIN,
        },
    ];
    let queries: [&[(&str, &str)]; 3] = [
        &[
            ("n", "count(*)"),
            ("avg_temp", "avg(temperature_c)"),
            ("max_temp", "max(temperature_c)"),
        ],
        &[
            (
                "spread",
                "round(max(temperature_c) - min(temperature_c), 1)",
            ),
            ("warm", "count(*) FILTER (WHERE temperature_c > 5)"),
            ("total", "sum(temperature_c) + 1"),
        ],
        &[
            ("readings", "count(temperature_c)"),
            ("firsts", "first_value(temperature_c ORDER BY ts)"),
        ],
    ];
    // Some rows were read after their earlier windows' lateness line had passed them.
    let floors = Int64Array::from(
        (0..rows.num_rows())
            .map(|i| if i % 11 == 0 { MIN } else { i64::MIN })
            .collect::<Vec<_>>(),
    );
    for kind in kinds {
        for query in queries {
            let aggregates: Vec<(String, String)> = query
                .iter()
                .map(|(name, expr)| (name.to_string(), expr.to_string()))
                .collect();
            let windows =
                WindowAggregation::compile(kind, &input, "ts", &["device_id".into()], &aggregates)
                    .unwrap();
            assert!(windows.is_incremental(), "{kind} {query:?}");
            let kept = windows.keep(&rows);
            let expected = windows
                .aggregate(&[kept.clone()], &[floors.clone()], Some(0), 3 * MIN)
                .await
                .unwrap();
            let mut open = OpenAggregates::default();
            for start in (0..kept.num_rows()).step_by(37) {
                let len = 37.min(kept.num_rows() - start);
                let floors = floors.slice(start, len);
                windows
                    .update(&mut open, &kept.slice(start, len), &floors, Some(0))
                    .unwrap();
            }
            let closed = windows.close(&mut open, 3 * MIN).unwrap();
            assert!(expected.num_rows() > 0);
            assert_eq!(
                sorted_lines(&closed),
                sorted_lines(&expected),
                "{kind} {query:?}"
            );
            // Windows past the close stay open; closing again emits nothing twice.
            let (size, _) = kind.size_and_slide().unwrap();
            assert!(
                open.oldest_start()
                    .is_some_and(|start| start + size > 3 * MIN)
            );
            assert_eq!(windows.close(&mut open, 3 * MIN).unwrap().num_rows(), 0);
        }
    }
}

#[test]
fn queries_that_are_not_one_aggregation_keep_rows() {
    let (input, _) = sensor_rows(1);
    let compile = |kind, expr: &str| {
        WindowAggregation::compile(
            kind,
            &input,
            "ts",
            &["device_id".into()],
            &[("x".to_string(), expr.to_string())],
        )
        .unwrap()
    };
    let tumble = WindowKind::Tumble { size_us: MIN };
    assert!(!compile(tumble, "count(distinct temperature_c)").is_incremental());
    assert!(!compile(tumble, "array_agg(temperature_c ORDER BY ts)").is_incremental());
    assert!(!compile(WindowKind::Session { gap_us: MIN }, "count(*)").is_incremental());
}
