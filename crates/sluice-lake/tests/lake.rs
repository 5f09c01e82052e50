//! The lake on the local filesystem (object_store's real local backend): commits carry offsets,
//! a writer that lost a partition is fenced, and a foreign table is never written over.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::parquet::basic::Encoding;
use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
use deltalake::parquet::record::RowAccessor as _;
use sluice_lake::write_ahead::OPEN_PARTITIONS;
use sluice_lake::{LakeError, LakeTable, PartitionProgress, WrittenFiles};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("_offset", DataType::Int64, true),
    ]))
}

fn rows(offsets: &[i64]) -> RecordBatch {
    let devices: Vec<String> = offsets.iter().map(|o| format!("d{o}")).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(devices)),
            Arc::new(Int64Array::from(offsets.to_vec())),
        ],
    )
    .unwrap()
}

fn progress(partition: i32, previous: Option<i64>, last_offset: i64) -> PartitionProgress {
    PartitionProgress {
        topic: "events".into(),
        partition,
        previous,
        last_offset,
        marks: Vec::new(),
    }
}

async fn open(uri: &str, schema: &SchemaRef) -> Result<LakeTable, LakeError> {
    LakeTable::open_or_create("t", uri, &HashMap::new(), schema, &[]).await
}

#[tokio::test]
async fn commits_record_each_partitions_last_offset_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    let mut table = open(&uri, &schema()).await.unwrap();
    assert_eq!(table.committed_offset("events", 0).await.unwrap(), None);

    let v1 = table
        .commit(
            &[rows(&[0, 1, 2])],
            &[progress(0, None, 2), progress(1, None, 9)],
        )
        .await
        .unwrap();
    let v2 = table
        .commit(&[rows(&[3])], &[progress(0, Some(2), 3)])
        .await
        .unwrap();
    assert_eq!(v2.version, v1.version + 1);

    let reopened = open(&uri, &schema()).await.unwrap();
    assert_eq!(
        reopened.committed_offset("events", 0).await.unwrap(),
        Some(3)
    );
    assert_eq!(
        reopened.committed_offset("events", 1).await.unwrap(),
        Some(9)
    );
    assert_eq!(reopened.committed_offset("other", 0).await.unwrap(), None);
}

#[tokio::test]
async fn a_writer_whose_partition_moved_on_is_fenced_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    let mut ours = open(&uri, &schema()).await.unwrap();
    let mut zombie = open(&uri, &schema()).await.unwrap();
    ours.commit(&[rows(&[0, 1])], &[progress(0, None, 1)])
        .await
        .unwrap();

    // The zombie still believes nothing is committed for partition 0.
    let err = zombie
        .commit(&[rows(&[0, 1])], &[progress(0, None, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LakeError::Fenced {
                partition: 0,
                expected: None,
                found: Some(1),
                ..
            }
        ),
        "{err}"
    );
    let version = ours.version();
    let fresh = open(&uri, &schema()).await.unwrap();
    assert_eq!(
        fresh.version(),
        version,
        "the fenced commit must not add a version"
    );
}

/// Writers racing for the same partition from the same starting point: whether the fence check
/// or Delta's conflict checker (a concurrent commit carrying the same `txn` app id) stops the
/// losers, exactly one commit per round lands and the offsets only move forward. On the local
/// filesystem the log is written with rename-if-absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_writers_racing_for_a_partition_exactly_one_commits_each_round() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    race_for_a_partition(&table.display().to_string(), &table, true).await;
}

/// The same race on the S3 server of `scripts/test.sh` (s3s-fs). The Delta log is written with
/// a conditional put (`If-None-Match: *`); s3s-fs checks and writes without a lock, so two
/// racing puts of one version can both succeed (20 of 30 races with curl) where AWS S3 and
/// MinIO document refusing the second. Then both writers believe they committed, one commit file remains,
/// and the loser's next commit is fenced by the `txn` check. What must hold regardless: one
/// version per round and every offset stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_writers_racing_on_s3_every_offset_is_stored_once() {
    let bucket = std::env::var("SLUICE_TEST_S3_BUCKET")
        .expect("SLUICE_TEST_S3_BUCKET is not set: run scripts/test.sh, which starts s3s-fs");
    let run_dir = std::env::var("SLUICE_RUN_DIR").expect("SLUICE_RUN_DIR is not set");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("race-{}-{nanos}/t", std::process::id());
    let stored = std::path::Path::new(&run_dir)
        .join("s3")
        .join(&bucket)
        .join(&prefix);
    race_for_a_partition(&format!("s3://{bucket}/{prefix}"), &stored, false).await;
}

/// Rounds of `WRITERS` writers committing the same offsets with the same `previous`. With an
/// atomic put-if-absent, exactly one wins each round. `stored` is where the table's files are
/// on this machine: its log is read as stored.
async fn race_for_a_partition(uri: &str, stored: &std::path::Path, atomic_put: bool) {
    const WRITERS: usize = 4;
    const ROUNDS: i64 = 8;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(open(uri, &schema()).await.unwrap());
    }
    let (mut fenced, mut conflicts, mut doubled) = (0, 0, 0);
    for round in 0..ROUNDS {
        let previous = (round > 0).then(|| round * 10 - 1);
        let offsets: Vec<i64> = (round * 10..round * 10 + 10).collect();
        let attempts = writers.drain(..).map(|mut writer| {
            let batch = rows(&offsets);
            tokio::spawn(async move {
                let result = writer
                    .commit(&[batch], &[progress(0, previous, round * 10 + 9)])
                    .await;
                (writer, result)
            })
        });
        let results = futures::future::join_all(attempts).await;
        let mut won = 0;
        for joined in results {
            let (writer, result) = joined.unwrap();
            match result {
                Ok(_) => won += 1,
                Err(err @ LakeError::Fenced { .. }) => {
                    assert!(err.is_fenced());
                    fenced += 1;
                }
                Err(err @ LakeError::ConcurrentCommit { .. }) => {
                    assert!(err.is_fenced());
                    conflicts += 1;
                }
                Err(err) => panic!("round {round}: unexpected error {err:#}"),
            }
            writers.push(writer);
        }
        if atomic_put {
            assert_eq!(won, 1, "round {round}: exactly one writer may commit");
        } else {
            assert!(won >= 1, "round {round}: nobody committed");
            doubled += usize::from(won > 1);
        }
    }
    eprintln!(
        "losers: {fenced} fenced before writing, {conflicts} refused by the conflict checker; \
         {doubled} round(s) where the store accepted two puts of one version"
    );
    let (versions, rows) = stored_log(stored);
    assert_eq!(
        versions,
        ROUNDS as usize + 1,
        "one version per round, after the create"
    );
    assert_eq!(rows, ROUNDS as u64 * 10, "every offset stored once");
    let table = open(uri, &schema()).await.unwrap();
    assert_eq!(
        table.committed_offset("events", 0).await.unwrap(),
        Some(ROUNDS * 10 - 1)
    );
    assert_eq!(
        table.version(),
        Some(ROUNDS as u64),
        "one version per round"
    );
}

#[tokio::test]
async fn a_table_with_another_schema_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    open(&uri, &schema()).await.unwrap();
    let other: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Int64, true),
        Field::new("_offset", DataType::Int64, true),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let err = open(&uri, &other).await.unwrap_err().to_string();
    assert!(
        err.contains("table t") && err.contains("refusing to write"),
        "{err}"
    );
    assert!(
        err.contains("column device_id is string in the table"),
        "{err}"
    );
    // A nullable column the table lacks is not a difference: it is added when written.
    assert!(!err.contains("extra"), "{err}");
}

/// A pipeline whose rows carry a new nullable column: the commit that first writes it adds it
/// to the table's schema, rows before hold null, and a writer still on the old columns goes on
/// committing (its rows are null there).
#[tokio::test]
async fn a_table_gains_a_column_in_the_commit_that_first_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    let mut old = open(&uri, &schema()).await.unwrap();
    old.commit(&[rows(&[0, 1])], &[progress(0, None, 1)])
        .await
        .unwrap();

    let wider: SchemaRef = Arc::new(Schema::new(
        (schema().fields().iter().cloned())
            .chain([Arc::new(Field::new("firmware", DataType::Utf8, true))])
            .collect::<Vec<_>>(),
    ));
    let mut new = open(&uri, &wider).await.unwrap();
    let with_firmware = RecordBatch::try_new(
        wider.clone(),
        vec![
            Arc::new(StringArray::from(vec!["d2"])),
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(StringArray::from(vec!["v2"])),
        ],
    )
    .unwrap();
    new.commit(&[with_firmware], &[progress(0, Some(1), 2)])
        .await
        .unwrap();
    old.commit(&[rows(&[3])], &[progress(0, Some(2), 3)])
        .await
        .unwrap();

    let reopened = open(&uri, &schema()).await.unwrap();
    assert_eq!(
        reopened.committed_offset("events", 0).await.unwrap(),
        Some(3)
    );
    let url = url::Url::from_directory_path(dir.path().join("t")).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let snapshot = table.snapshot().unwrap();
    let columns: Vec<String> = (snapshot.schema().fields())
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(columns, ["device_id", "_offset", "firmware"]);
    let history = sluice_lake::evolution::schema_history(snapshot.metadata().configuration());
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        history[0].added,
        [("firmware".to_string(), "Utf8".to_string())]
    );
    // Each row's firmware, by offset, as the files hold it (a file without the column is
    // all null there, as Delta readers take it).
    let mut firmware: Vec<(i64, Option<String>)> = Vec::new();
    for path in table.get_file_uris().unwrap() {
        let file = std::fs::File::open(path.trim_start_matches("file://")).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let has = (reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter())
        .any(|c| c.name() == "firmware");
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            let offset = row.get_long(1).unwrap();
            let value = has.then(|| row.get_string(2).ok().cloned()).flatten();
            firmware.push((offset, value));
        }
    }
    firmware.sort();
    assert_eq!(
        firmware,
        [(0, None), (1, None), (2, Some("v2".into())), (3, None)]
    );
}

#[tokio::test]
async fn a_table_another_pipeline_created_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    // A Delta table with the very same columns, created by someone else.
    let columns: deltalake::kernel::StructType = schema().as_ref().try_into_kernel().unwrap();
    deltalake::DeltaTable::try_from_url(sluice_lake::location::table_url("t", &uri).unwrap())
        .await
        .unwrap()
        .create()
        .with_columns(columns.fields().cloned())
        .await
        .unwrap();
    let err = open(&uri, &schema()).await.unwrap_err().to_string();
    assert!(
        err.contains("table t") && err.contains("not created by sluice"),
        "{err}"
    );
    assert!(err.contains("no sluice.writer property"), "{err}");
}

#[tokio::test]
async fn a_corrupt_delta_log_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    let mut table = open(&uri, &schema()).await.unwrap();
    table
        .commit(&[rows(&[0, 1])], &[progress(0, None, 1)])
        .await
        .unwrap();
    let log = dir.path().join("t/_delta_log/00000000000000000001.json");
    std::fs::write(&log, b"{ this is not a delta action\n").unwrap();
    let err = open(&uri, &schema()).await.unwrap_err();
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let err = chain;
    assert!(err.contains("table t at file://"), "{err}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        b"{ this is not a delta action\n",
        "the corrupt commit is left for a person to look at"
    );
}

/// Reads a table's Delta log as stored: the number of commit files and the rows its add
/// actions record.
fn stored_log(table: &std::path::Path) -> (usize, u64) {
    let mut versions = 0;
    let mut rows = 0;
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        versions += 1;
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(stats) = action["add"]["stats"].as_str() {
                let stats: serde_json::Value = serde_json::from_str(stats).unwrap();
                rows += stats["numRecords"].as_u64().unwrap();
            }
        }
    }
    (versions, rows)
}

/// The data pages' encodings of each column of the one Parquet file under `table`.
fn data_page_encodings(table: &std::path::Path) -> HashMap<String, Vec<Encoding>> {
    let files: Vec<_> = std::fs::read_dir(table)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    let all = [
        Encoding::PLAIN,
        Encoding::RLE_DICTIONARY,
        Encoding::PLAIN_DICTIONARY,
    ];
    group
        .columns()
        .iter()
        .map(|chunk| {
            let mask = chunk
                .page_encoding_stats_mask()
                .expect("encoding stats written");
            let used = all.into_iter().filter(|e| mask.is_set(*e)).collect();
            (chunk.column_path().string(), used)
        })
        .collect()
}

#[tokio::test]
async fn mostly_distinct_numbers_fall_back_to_plain_early_while_names_keep_their_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    let mut table = open(&uri, &schema()).await.unwrap();
    // 50,000 distinct offsets are 400 KB of dictionary: under Parquet's default 1 MiB limit
    // they would stay dictionary-encoded; fixed-width columns stop at 64 KiB.
    let offsets: Vec<i64> = (0..50_000).collect();
    let devices: Vec<String> = offsets
        .iter()
        .map(|o| format!("device-{}", o % 500))
        .collect();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(devices)),
            Arc::new(Int64Array::from(offsets)),
        ],
    )
    .unwrap();
    table
        .commit(&[batch], &[progress(0, None, 49_999)])
        .await
        .unwrap();
    let encodings = data_page_encodings(&dir.path().join("t"));
    assert!(
        encodings["_offset"].contains(&Encoding::PLAIN),
        "{encodings:?}"
    );
    assert_eq!(
        encodings["device_id"],
        [Encoding::RLE_DICTIONARY],
        "{encodings:?}"
    );
}

#[tokio::test]
async fn rows_of_interleaved_partitions_land_under_their_partition_values() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    let mut table = hourly_table(&uri).await;
    // Batch 0 holds hours 5, 7 and 5; batch 1 hours 7, 6 and 6; batch 2 is empty.
    let batches = vec![
        hour_rows(&[0, 1, 2], &[5, 7, 5]),
        hour_rows(&[3, 4, 5], &[7, 6, 6]),
        hour_rows(&[], &[]),
    ];
    table
        .commit(batches, &[progress(0, None, 5)])
        .await
        .unwrap();
    let landed = landed_by_hour(&dir.path().join("t"), 1);
    assert_eq!(
        landed,
        [
            ("5".to_string(), vec![0, 2]),
            ("6".to_string(), vec![4, 5]),
            ("7".to_string(), vec![1, 3]),
        ]
    );
}

/// The offsets in each file that commit `version` of the table at `table` added, with the
/// file's `hour` partition value, sorted.
fn landed_by_hour(table: &std::path::Path, version: u64) -> Vec<(String, Vec<i64>)> {
    let log =
        std::fs::read_to_string(table.join(format!("_delta_log/{version:020}.json"))).unwrap();
    let mut landed = Vec::new();
    for line in log.lines() {
        let action: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(path) = action["add"]["path"].as_str() else {
            continue;
        };
        let hour = action["add"]["partitionValues"]["hour"].as_str().unwrap();
        assert!(path.starts_with(&format!("hour={hour}/")), "{path}");
        let file = std::fs::File::open(table.join(path)).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let offsets = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().get_long(0).unwrap())
            .collect();
        landed.push((hour.to_string(), offsets));
    }
    landed.sort();
    landed
}

#[tokio::test]
async fn rows_written_ahead_land_only_at_their_commit_with_the_oldest_partition_files_closed() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t").display().to_string();
    let mut table = hourly_table(&uri).await;
    let hours = OPEN_PARTITIONS as i32 + 2;
    let offsets: Vec<i64> = (0..hours as i64).collect();
    // One row in each of `hours` hours: the first two hours' files are closed to open the
    // last two. Then hour 0 again (closed: its row is held for a second file at the commit)
    // and the last hour again (still open).
    let mut files = WrittenFiles::default();
    for written in [
        hour_rows(&offsets, &(0..hours).collect::<Vec<_>>()),
        hour_rows(&[hours as i64, hours as i64 + 1], &[0, hours - 1]),
    ] {
        table.write_ahead(&mut files, &written).await.unwrap();
        assert!(files.open_partitions() <= OPEN_PARTITIONS);
        if files.rows() == hours as usize {
            assert_eq!(files.held_rows(), 0, "hours in order hold no rows");
        }
    }
    assert_eq!(files.rows(), hours as usize + 2);
    assert_eq!(files.held_rows(), 1);
    assert_eq!(
        table.version(),
        Some(0),
        "nothing is committed before commit_written"
    );
    let last = hours as i64 + 1;
    let version = table
        .commit_written(files, &[progress(0, None, last)])
        .await
        .unwrap();
    assert_eq!(version.version, 1);
    assert_eq!(
        table.committed_offset("events", 0).await.unwrap(),
        Some(last)
    );
    // Hour 0 in two files; the last hour's file stayed open for both of its rows.
    let mut expected: Vec<(String, Vec<i64>)> = (0..hours)
        .map(|hour| {
            let mut offsets = vec![hour as i64];
            if hour == hours - 1 {
                offsets.push(last);
            }
            (hour.to_string(), offsets)
        })
        .collect();
    expected.push(("0".to_string(), vec![hours as i64]));
    expected.sort();
    assert_eq!(landed_by_hour(&dir.path().join("t"), 1), expected);

    // A writer whose progress another writer moved on commits nothing.
    let mut files = WrittenFiles::default();
    table
        .write_ahead(&mut files, &hour_rows(&[99], &[0]))
        .await
        .unwrap();
    let error = table
        .commit_written(files, &[progress(0, None, 99)])
        .await
        .unwrap_err();
    assert!(matches!(error, LakeError::Fenced { .. }), "{error}");
    assert_eq!(table.version(), Some(1));
}

/// Rows of `_offset` and `hour`.
fn hour_rows(offsets: &[i64], hours: &[i32]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("_offset", DataType::Int64, true),
        Field::new("hour", DataType::Int32, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(offsets.to_vec())),
            Arc::new(Int32Array::from(hours.to_vec())),
        ],
    )
    .unwrap()
}

/// A table of [`hour_rows`] partitioned by hour.
async fn hourly_table(uri: &str) -> LakeTable {
    let schema = hour_rows(&[], &[]).schema();
    LakeTable::open_or_create("t", uri, &HashMap::new(), &schema, &["hour".into()])
        .await
        .unwrap()
}

#[tokio::test]
async fn rows_written_ahead_that_keep_returning_to_many_hours_make_at_most_two_files_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = hourly_table(&dir.path().join("t").display().to_string()).await;
    let hours = OPEN_PARTITIONS as i32 + 4;
    let mut files = WrittenFiles::default();
    let mut offset = 0;
    let mut expected: HashMap<i32, Vec<i64>> = HashMap::new();
    // Five batches, each with two rows in every hour, the hours in a different order.
    for round in 0..5 {
        let order: Vec<i32> = (0..hours * 2).map(|i| (i * 7 + round) % hours).collect();
        let offsets: Vec<i64> = (offset..offset + order.len() as i64).collect();
        for (hour, offset) in order.iter().zip(&offsets) {
            expected.entry(*hour).or_default().push(*offset);
        }
        offset += offsets.len() as i64;
        table
            .write_ahead(&mut files, &hour_rows(&offsets, &order))
            .await
            .unwrap();
        assert!(files.open_partitions() <= OPEN_PARTITIONS);
    }
    assert!(files.held_rows() > 0);
    table
        .commit_written(files, &[progress(0, None, offset - 1)])
        .await
        .unwrap();
    let mut landed: HashMap<String, Vec<Vec<i64>>> = HashMap::new();
    for (hour, offsets) in landed_by_hour(&dir.path().join("t"), 1) {
        landed.entry(hour).or_default().push(offsets);
    }
    assert_eq!(landed.len(), hours as usize);
    for (hour, offsets) in expected {
        let files = &landed[&hour.to_string()];
        assert!(files.len() <= 2, "hour {hour}: {files:?}");
        let mut all: Vec<i64> = files.concat();
        all.sort();
        assert_eq!(all, offsets, "hour {hour}");
    }
}
