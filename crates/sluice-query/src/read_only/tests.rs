use std::sync::Arc;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;

use super::*;
use crate::Opening;

const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(30),
    rows: 1000,
};

/// A lake of one in-memory table `t` with `n` = 0..2500, in batches of 500.
fn lake() -> Lake {
    lake_opened(Opening::default())
}

fn lake_opened(opening: Opening) -> Lake {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batches = (0..5)
        .map(|b| {
            let values = Int64Array::from_iter_values(b * 500..(b + 1) * 500);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
        })
        .collect();
    let ctx = opening.session();
    let table = MemTable::try_new(schema, vec![batches]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    Lake {
        ctx,
        summaries: Vec::new(),
    }
}

fn rows(result: &Rows) -> usize {
    result.batches.iter().map(RecordBatch::num_rows).sum()
}

#[tokio::test]
async fn a_query_reads_up_to_the_cap_and_says_it_stopped() {
    let lake = lake();
    let all = lake.read_only("select n from t", LIMITS).await.unwrap();
    assert_eq!((rows(&all), all.truncated), (1000, true));
    let few = lake
        .read_only("select count(*) as c from t", LIMITS)
        .await
        .unwrap();
    assert_eq!((rows(&few), few.truncated), (1, false));
    let exact = Limits {
        rows: 2500,
        ..LIMITS
    };
    let every = lake.read_only("select n from t", exact).await.unwrap();
    assert_eq!((rows(&every), every.truncated), (2500, false));
}

#[tokio::test]
async fn writes_definitions_and_session_statements_are_refused_by_name() {
    let lake = lake();
    for (statement, expected) in [
        ("DELETE FROM t", "DML not supported: Delete"),
        ("INSERT INTO t VALUES (1)", "DML not supported: Insert Into"),
        ("CREATE TABLE x AS SELECT 1", "DDL not supported"),
        ("DROP TABLE t", "DDL not supported"),
        ("CREATE VIEW v AS SELECT 1", "DDL not supported"),
        ("COPY t TO '/tmp/x.csv'", "DML not supported"),
        (
            "SET datafusion.execution.batch_size = 1",
            "Statement not supported",
        ),
        ("EXPLAIN DELETE FROM t", "DML not supported"),
    ] {
        let err = lake.read_only(statement, LIMITS).await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ReadOnlyError::Refused(_)) && message.contains(expected),
            "{statement}: {message}"
        );
        assert!(message.starts_with("read-only console: "), "{message}");
    }
    let count = lake.read_only("select count(*) from t", LIMITS).await;
    assert!(count.is_ok(), "the table is still there");
}

#[tokio::test]
async fn a_sql_error_carries_datafusions_message() {
    let err = lake()
        .read_only("select * from no_such_table", LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(err, ReadOnlyError::Sql(_)), "{err:?}");
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[tokio::test]
async fn a_query_past_its_time_limit_is_cancelled_and_says_so() {
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..LIMITS
    };
    let started = Instant::now();
    let err = lake()
        .read_only(
            "select sum(value) from generate_series(1, 100000000000)",
            limits,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ReadOnlyError::Timeout(_)), "{err:?}");
    assert!(err.to_string().contains("cancelled after 300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_query_past_the_memory_limit_fails_and_writes_nothing_to_disk() {
    let lake = lake_opened(Opening {
        table_limit: None,
        memory_limit: Some(1 << 20),
    });
    let err = lake
        .read_only(
            "select value % 1000003 as k, count(*) as n from generate_series(1, 5000000) \
             group by 1 order by 2 desc, 1",
            LIMITS,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ReadOnlyError::Sql(_)), "{err:?}");
    assert!(err.to_string().contains("Resources exhausted"), "{err}");
    let small = lake.read_only("select count(*) from t", LIMITS).await;
    assert!(small.is_ok(), "a small query fits");
}
