//! Plain-files tables on the local filesystem (object_store's real local backend): objects
//! appear only through commits, under Hive-style paths, a fenced writer adds nothing, and a
//! commit a crash left half published is completed by the next writer.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_core::config::{FileCompression, FileFormat, FileKind};
use sluice_lake::files::FilesTable;
use sluice_lake::{FilesSink, LakeError, PartitionProgress, Sink};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("_offset", DataType::Int64, true),
        Field::new("date", DataType::Date32, true),
        Field::new("hour", DataType::Int32, true),
    ]))
}

/// Rows at `offsets`, the even ones in hour 9 and the odd ones in hour 10 of 2026-12-03.
fn rows(offsets: &[i64]) -> RecordBatch {
    let devices: Vec<String> = offsets.iter().map(|o| format!("d,{o}")).collect();
    let hours: Vec<i32> = offsets.iter().map(|o| 9 + (o % 2) as i32).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(devices)),
            Arc::new(Int64Array::from(offsets.to_vec())),
            Arc::new(Date32Array::from(vec![20_790; offsets.len()])),
            Arc::new(Int32Array::from(hours)),
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
        marks: vec![("watermark", last_offset * 10)],
    }
}

const CSV_GZ: FileFormat = FileFormat {
    kind: FileKind::Csv,
    compression: FileCompression::Gzip,
};

async fn open(uri: &str, format: FileFormat) -> Result<FilesSink, LakeError> {
    let partition_by = ["date".to_string(), "hour".to_string()];
    FilesSink::open_or_create("t", uri, &HashMap::new(), &schema(), &partition_by, format).await
}

/// Every file under `dir`, relative to it, in order.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The data objects: everything outside `_sluice/`.
fn data_files(dir: &Path) -> Vec<String> {
    (files_under(dir).into_iter())
        .filter(|path| !path.starts_with("_sluice/"))
        .collect()
}

fn gunzip(path: &PathBuf) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[tokio::test]
async fn commits_land_csv_objects_under_date_hour_paths_with_their_progress() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let mut sink = open(&uri, CSV_GZ).await.unwrap();
    assert_eq!(sink.committed("events", 0).await.unwrap(), None);

    let first = sink
        .commit(&[rows(&[0, 1, 2])], &[progress(0, None, 2)])
        .await
        .unwrap();
    sink.write(&rows(&[3])).await.unwrap();
    let second = sink
        .commit(&[rows(&[4])], &[progress(0, Some(2), 4)])
        .await
        .unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    assert_eq!((first.files, second.files), (2, 2));

    assert_eq!(
        data_files(dir.path()),
        [
            "date=2026-12-03/hour=10/part-00000000000000000001-001.csv.gz",
            "date=2026-12-03/hour=10/part-00000000000000000002-000.csv.gz",
            "date=2026-12-03/hour=9/part-00000000000000000001-000.csv.gz",
            "date=2026-12-03/hour=9/part-00000000000000000002-001.csv.gz",
        ]
    );
    // RFC 4180: a header, and a value holding a comma quoted; no partition columns.
    assert_eq!(
        gunzip(&dir.path().join(&data_files(dir.path())[3])),
        "device_id,_offset\n\"d,4\",4\n"
    );
    assert_eq!(
        gunzip(&dir.path().join(&data_files(dir.path())[1])),
        "device_id,_offset\n\"d,3\",3\n"
    );
    let staged = files_under(&dir.path().join("_sluice/staging"));
    assert!(staged.is_empty(), "staged copies left: {staged:?}");

    let reopened = open(&uri, CSV_GZ).await.unwrap();
    assert_eq!(reopened.committed("events", 0).await.unwrap(), Some(4));
    assert_eq!(
        reopened
            .committed_mark("events", 0, "watermark")
            .await
            .unwrap(),
        Some(40)
    );
}

#[tokio::test]
async fn a_writer_that_lost_its_partition_is_fenced_and_adds_no_object() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let mut a = open(&uri, CSV_GZ).await.unwrap();
    let mut b = open(&uri, CSV_GZ).await.unwrap();
    a.commit(&[rows(&[0])], &[progress(0, None, 0)])
        .await
        .unwrap();
    // b commits another partition: both land, one after the other in the log.
    b.commit(&[rows(&[100])], &[progress(1, None, 100)])
        .await
        .unwrap();
    let before = data_files(dir.path());
    let err = b
        .commit(&[rows(&[0, 1])], &[progress(0, None, 1)])
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(data_files(dir.path()), before);
    assert!(files_under(&dir.path().join("_sluice/staging")).is_empty());
    a.refresh().await.unwrap();
    assert_eq!(a.committed("events", 1).await.unwrap(), Some(100));
}

#[tokio::test]
async fn a_commit_left_half_published_is_completed_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let format = FileFormat {
        kind: FileKind::Parquet,
        compression: FileCompression::Zstd,
    };
    let mut sink = open(&uri, format).await.unwrap();
    sink.commit(&[rows(&[0, 1])], &[progress(0, None, 1)])
        .await
        .unwrap();
    // As if the writer died after its log entry, before publishing: the objects are only in
    // their staged copies.
    let table = FilesTable::open("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    let entry = table.latest.clone();
    for object in &entry.objects {
        std::fs::rename(
            dir.path().join(&object.path),
            dir.path().join(&object.staged),
        )
        .unwrap();
    }
    assert!(data_files(dir.path()).is_empty());

    let reopened = open(&uri, format).await.unwrap();
    assert_eq!(reopened.committed("events", 0).await.unwrap(), Some(1));
    let published = data_files(dir.path());
    assert_eq!(published.len(), 2, "{published:?}");
    let rows: i64 = published
        .iter()
        .map(|path| {
            let file = std::fs::File::open(dir.path().join(path)).unwrap();
            SerializedFileReader::new(file)
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows()
        })
        .sum();
    assert_eq!(rows, 2);
    let listing = table
        .listing(&table.entries().await.unwrap(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(
        listing.missing.is_empty() && listing.unexpected.is_empty(),
        "{listing:?}"
    );
}

#[tokio::test]
async fn objects_of_a_commit_that_never_happened_stay_out_of_sight() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let mut a = open(&uri, CSV_GZ).await.unwrap();
    let mut b = open(&uri, CSV_GZ).await.unwrap();
    a.commit(&[rows(&[0])], &[progress(0, None, 0)])
        .await
        .unwrap();
    assert!(
        b.commit(&[rows(&[0])], &[progress(0, None, 0)])
            .await
            .unwrap_err()
            .is_fenced()
    );
    // A staged copy of a writer that died before its commit: no commit names it.
    std::fs::write(dir.path().join("_sluice/staging/dead-000.staged"), b"x").unwrap();
    let table = FilesTable::open("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    let listing = table
        .listing(&table.entries().await.unwrap(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(listing.committed.len(), 1);
    assert!(listing.unexpected.is_empty(), "{listing:?}");
    let leftover: Vec<&str> = (listing.leftover_staged.iter())
        .map(|(path, _)| path.as_str())
        .collect();
    assert_eq!(leftover, ["_sluice/staging/dead-000.staged"]);
}

#[tokio::test]
async fn a_table_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    open(&uri, CSV_GZ).await.unwrap();
    let jsonl = FileFormat {
        kind: FileKind::Jsonl,
        compression: FileCompression::None,
    };
    let err = open(&uri, jsonl).await.err().unwrap().to_string();
    assert!(
        err.contains("different schema") && err.contains("csv objects (gzip compression, .csv.gz)"),
        "{err}"
    );
}

#[tokio::test]
async fn the_log_records_column_types_that_read_back_as_arrow_types() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    open(&uri, CSV_GZ).await.unwrap();
    let table = FilesTable::open("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    let read = table.schema().unwrap();
    let names: Vec<(&str, &DataType)> = (read.fields().iter())
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        names,
        [
            ("device_id", &DataType::Utf8),
            ("_offset", &DataType::Int64)
        ]
    );
    // The log keeps types as Arrow writes them; the stream columns' types read back.
    for ty in [
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Decimal128(20, 0),
        DataType::new_list(DataType::Utf8, true),
        DataType::Struct(vec![Field::new("street", DataType::Utf8, true)].into()),
    ] {
        assert_eq!(DataType::from_str(&ty.to_string()).unwrap(), ty);
    }
}

#[tokio::test]
async fn compaction_rewrites_small_objects_per_partition_with_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let mut stream = open(&uri, CSV_GZ).await.unwrap();
    for (first, previous) in [(0, None), (4, Some(3)), (8, Some(7))] {
        let offsets: Vec<i64> = (first..first + 4).collect();
        stream
            .commit(&[rows(&offsets)], &[progress(0, previous, first + 3)])
            .await
            .unwrap();
    }
    assert_eq!(data_files(dir.path()).len(), 6);
    let lines = |dir: &Path| -> Vec<String> {
        let mut lines: Vec<String> = (data_files(dir).iter())
            .flat_map(|path| {
                let text = gunzip(&dir.join(path));
                let rows: Vec<String> = text.lines().skip(1).map(String::from).collect();
                rows.into_iter().map(move |row| format!("{path}: {row}"))
            })
            .map(|line| {
                // The hour directory and the row, without the object's name.
                let (path, row) = line.split_once(": ").unwrap();
                format!("{}: {row}", path.rsplit_once('/').unwrap().0)
            })
            .collect();
        lines.sort();
        lines
    };
    let before = lines(dir.path());

    let mut maintenance = FilesSink::open_existing("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    let target = 64 * 1024 * 1024;
    // Objects younger than an hour are left alone (a writer may still be putting them).
    let young = maintenance.compact(target, HOUR).await.unwrap();
    assert_eq!((young.files_removed, young.files_added), (0, 0));
    // The latest commit's objects are not known to be published yet (its entry vouches only
    // for the commits before it): the four of the first two commits are rewritten as one per
    // hour.
    let done = maintenance.compact(target, Duration::ZERO).await.unwrap();
    assert_eq!(
        (done.files_removed, done.files_added, done.partitions),
        (4, 2, 2)
    );
    assert_eq!(data_files(dir.path()).len(), 4);
    assert_eq!(lines(dir.path()), before);

    // The stream goes on from its own progress: compaction moved none.
    stream
        .commit(&[rows(&[12])], &[progress(0, Some(11), 12)])
        .await
        .unwrap();
    let table = FilesTable::open("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    let listing = table
        .listing(&table.entries().await.unwrap(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(listing.committed.len(), 5, "{listing:?}");
    assert!(listing.missing.is_empty() && listing.unexpected.is_empty());
    assert_eq!(table.latest.total_objects, 5);
    let again = maintenance.compact(target, Duration::ZERO).await.unwrap();
    assert_eq!(
        (again.files_removed, again.files_added),
        (4, 2),
        "{again:?}"
    );
    assert_eq!(data_files(dir.path()).len(), 3);
}

const HOUR: Duration = Duration::from_secs(3600);

/// `batch` with a text column `name` after its own: `<name><offset>`.
fn with_column(batch: RecordBatch, name: &str) -> RecordBatch {
    let offsets = batch.column_by_name("_offset").unwrap().clone();
    let offsets = offsets.as_any().downcast_ref::<Int64Array>().unwrap();
    let values: StringArray = (offsets.iter())
        .map(|o| o.map(|o| format!("{name}{o}")))
        .collect();
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new(name, DataType::Utf8, true)));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(values));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// The header and rows of every CSV object, in path order.
fn csv_objects(dir: &Path) -> Vec<Vec<String>> {
    (data_files(dir).iter())
        .map(|path| gunzip(&dir.join(path)).lines().map(String::from).collect())
        .collect()
}

#[tokio::test]
async fn writers_adding_other_columns_never_misplace_csv_values_and_compaction_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let mut first = open(&uri, CSV_GZ).await.unwrap();
    let mut second = open(&uri, CSV_GZ).await.unwrap();
    first
        .commit(&[rows(&[0])], &[progress(0, None, 0)])
        .await
        .unwrap();
    first
        .commit(
            &[with_column(rows(&[2]), "site")],
            &[progress(0, Some(0), 2)],
        )
        .await
        .unwrap();
    // The second writer adds `floor` without having seen `site`: its object would have
    // `floor` where the table has `site`, so the commit is refused, transiently.
    let refused = second
        .commit(
            &[with_column(rows(&[11]), "floor")],
            &[progress(1, None, 11)],
        )
        .await
        .err()
        .expect("a CSV object out of line with the table's columns was committed");
    assert!(refused.is_transient(), "{refused}");
    let mut chain = refused.to_string();
    let mut source = std::error::Error::source(&refused);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(chain.contains("another writer added columns"), "{chain}");
    // Encoded again (as the engine does after a failed commit), its rows line up.
    second
        .commit(
            &[with_column(rows(&[11]), "floor")],
            &[progress(1, None, 11)],
        )
        .await
        .unwrap();
    let table = FilesTable::open("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    let columns: Vec<&str> = (table.latest.table.columns.iter())
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(columns, ["device_id", "_offset", "site", "floor"]);
    let headers: Vec<String> = csv_objects(dir.path())
        .into_iter()
        .map(|lines| lines[0].clone())
        .collect();
    for header in &headers {
        assert!(
            "device_id,_offset,site,floor".starts_with(header.as_str()),
            "{headers:?}"
        );
    }

    // Compaction reads the shorter rows of the older objects as null there.
    let mut maintenance = FilesSink::open_existing("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    first
        .commit(&[rows(&[4])], &[progress(0, Some(2), 4)])
        .await
        .unwrap();
    let done = maintenance.compact(64 << 20, Duration::ZERO).await.unwrap();
    assert!(done.files_removed >= 2, "{done:?}");
    let mut rows_read: Vec<String> = csv_objects(dir.path())
        .into_iter()
        .flat_map(|lines| lines.into_iter().skip(1))
        .collect();
    rows_read.sort();
    assert_eq!(
        rows_read,
        [
            "\"d,0\",0,,",
            "\"d,11\",11,,floor11",
            "\"d,2\",2,site2,",
            // The latest commit's object (not compacted: not yet known to be published),
            // encoded before its writer saw `floor`: its columns are the table's first three.
            "\"d,4\",4,",
        ]
    );
}

#[tokio::test]
async fn a_column_of_another_type_than_the_logs_is_refused_at_open_and_from_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let mut sink = open(&uri, CSV_GZ).await.unwrap();
    sink.commit(&[rows(&[0])], &[progress(0, None, 0)])
        .await
        .unwrap();
    let mut fields = schema().fields().to_vec();
    fields[1] = Arc::new(Field::new("_offset", DataType::Utf8, true));
    let partition_by = ["date".to_string(), "hour".to_string()];
    let err = FilesSink::open_or_create(
        "t",
        &uri,
        &HashMap::new(),
        &Arc::new(Schema::new(fields)),
        &partition_by,
        CSV_GZ,
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("column _offset is Int64 in the table, the pipeline writes Utf8"),
        "{err}"
    );

    // Two writers adding `site`, one as text and one as a number: the second is refused when
    // it reads the first's entry, naming the column, and commits nothing.
    let mut numbers = open(&uri, CSV_GZ).await.unwrap();
    sink.commit(
        &[with_column(rows(&[2]), "site")],
        &[progress(0, Some(0), 2)],
    )
    .await
    .unwrap();
    let batch = rows(&[11]);
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new("site", DataType::Int64, true)));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(vec![7])));
    let numeric = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let err = numbers
        .commit(&[numeric], &[progress(1, None, 11)])
        .await
        .err()
        .expect("a column of another type than the log's was committed");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .contains("column site is Utf8 in the table, the pipeline writes Int64"),
        "{err}"
    );
    let table = FilesTable::open("t", &uri, &HashMap::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(table.latest.progress.get("events/1"), None);
}
