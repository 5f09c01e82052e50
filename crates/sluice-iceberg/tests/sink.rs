//! Iceberg tables through a real SQL catalog (a SQLite file, the layout pyiceberg shares) on the
//! local filesystem: commits carry each partition's offset, a reopened table resumes from
//! them, members committing other partitions of one table all land, a writer whose partition
//! moved is fenced and adds nothing, verify, compaction and expiry keep every row.

mod common;

use std::collections::HashMap;

use deltalake::parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use iceberg::spec::Operation;
use sluice_lake::{LakeError, Sink};

use common::*;

#[tokio::test]
async fn commits_carry_offsets_and_a_reopened_table_resumes_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path()).await;
    assert_eq!(sink.committed("sensor.events", 0).await.unwrap(), None);
    let commit = sink
        .commit(&[rows(0, &[0, 1, 2, 3])], &[moved(0, None, 3)])
        .await
        .unwrap();
    assert_eq!(commit.files, 2, "one file per hour partition");
    sink.commit(&[rows(0, &[4, 5])], &[moved(0, Some(3), 5)])
        .await
        .unwrap();

    let reopened = open(dir.path()).await;
    assert_eq!(
        reopened.committed("sensor.events", 0).await.unwrap(),
        Some(5)
    );
    assert_eq!(
        reopened
            .committed_mark("sensor.events", 0, "watermark")
            .await
            .unwrap(),
        Some(50)
    );
    assert_eq!(summary(&reopened, "total-records"), "6");
    assert_eq!(summary(&reopened, "total-data-files"), "4");
    let snapshot = reopened.table().metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.summary().operation, Operation::Append);

    // The files are under Hive-style partition paths and carry Iceberg field ids.
    let hours: Vec<_> = std::fs::read_dir(dir.path().join("sensor_events/data"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut hours = hours;
    hours.sort();
    assert_eq!(hours, ["ts_hour=2026-12-03-09", "ts_hour=2026-12-03-10"]);
    let file = std::fs::read_dir(dir.path().join("sensor_events/data/ts_hour=2026-12-03-09"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let reader = reader_of(file);
    let ids: Vec<&str> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.metadata()[PARQUET_FIELD_ID_META_KEY].as_str())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
}

#[tokio::test]
async fn members_of_other_partitions_both_land_on_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path()).await;
    let mut second = open(dir.path()).await;
    first
        .commit(&[rows(0, &[0, 1])], &[moved(0, None, 1)])
        .await
        .unwrap();
    // `second` planned on the empty table; it rebases onto `first`'s commit.
    second
        .commit(&[rows(1, &[0, 1, 2])], &[moved(1, None, 2)])
        .await
        .unwrap();
    let reopened = open(dir.path()).await;
    assert_eq!(
        reopened.committed("sensor.events", 0).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        reopened.committed("sensor.events", 1).await.unwrap(),
        Some(2)
    );
    assert_eq!(summary(&reopened, "total-records"), "5");
    assert_eq!(snapshots(&reopened), 2);
}

#[tokio::test]
async fn a_writer_whose_partition_moved_is_fenced_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut winner = open(dir.path()).await;
    let mut zombie = open(dir.path()).await;
    winner
        .commit(&[rows(0, &[0, 1])], &[moved(0, None, 1)])
        .await
        .unwrap();
    let err = zombie
        .commit(&[rows(0, &[0, 1, 2])], &[moved(0, None, 2)])
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(
        err.to_string(),
        "table sensor_events: sensor.events/0 was committed up to offset Some(1) by another \
         writer, expected None; commit refused"
    );
    let reopened = open(dir.path()).await;
    assert_eq!(snapshots(&reopened), 1);
    assert_eq!(summary(&reopened, "total-records"), "2");
    assert_eq!(
        reopened.committed("sensor.events", 0).await.unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn two_members_racing_for_one_partition_land_exactly_one_commit_per_round() {
    const ROUNDS: i64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let mut left = open(dir.path()).await;
    let mut right = open(dir.path()).await;
    let mut committed = None;
    let mut wins = [0, 0];
    for round in 0..ROUNDS {
        let (from, to) = (round * 3, round * 3 + 2);
        let batch = rows(0, &(from..=to).collect::<Vec<_>>());
        let progress = [moved(0, committed, to)];
        let (a, b) = tokio::join!(
            left.commit(std::slice::from_ref(&batch), &progress),
            right.commit(std::slice::from_ref(&batch), &progress)
        );
        let outcomes = [a.is_ok(), b.is_ok()];
        assert_eq!(
            outcomes.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {a:?} {b:?}"
        );
        let loser = if outcomes[0] { &b } else { &a };
        assert!(
            loser.as_ref().is_err_and(LakeError::is_fenced),
            "round {round}: {loser:?}"
        );
        wins[usize::from(!outcomes[0])] += 1;
        committed = Some(to);
        left.refresh().await.unwrap();
        right.refresh().await.unwrap();
    }
    let reopened = open(dir.path()).await;
    assert_eq!(snapshots(&reopened), ROUNDS as usize);
    assert_eq!(
        summary(&reopened, "total-records"),
        (ROUNDS * 3).to_string()
    );
    assert_eq!(
        reopened.committed("sensor.events", 0).await.unwrap(),
        committed
    );
    eprintln!("wins (left, right): {wins:?}");
}

#[tokio::test]
async fn a_table_another_writer_created_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = sluice_iceberg::catalog::connect(&catalog(dir.path()), &HashMap::new())
        .await
        .unwrap();
    let namespace = iceberg::NamespaceIdent::new("sluice".into());
    sluice_iceberg::catalog::ensure_namespace(catalog.as_ref(), &namespace)
        .await
        .unwrap();
    let creation = iceberg::TableCreation::builder()
        .name("sensor_events".into())
        .location(format!("file://{}/sensor_events", dir.path().display()))
        .schema(sluice_iceberg::schema::iceberg_schema(&schema()).unwrap())
        .build();
    catalog.create_table(&namespace, creation).await.unwrap();
    let Err(err) = open_with(dir.path(), &schema()).await else {
        panic!("a table sluice did not create was opened for writing");
    };
    let message = err.to_string();
    assert!(
        message.contains("was not created by sluice (sluice.writer is None)"),
        "{message}"
    );
}

#[tokio::test]
async fn verify_finds_and_removes_only_data_files_no_snapshot_references() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path()).await;
    sink.commit(&[rows(0, &[0, 1, 2, 3])], &[moved(0, None, 3)])
        .await
        .unwrap();
    let hour = dir.path().join("sensor_events/data/ts_hour=2026-12-03-09");
    let committed = std::fs::read_dir(&hour)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orphan = hour.join("never-committed.parquet");
    std::fs::copy(&committed, &orphan).unwrap();

    let snapshot = snapshot_of(dir.path()).await;
    assert_eq!(snapshot.files.len(), 2);
    assert!(snapshot.check_files().await.is_empty());
    let young = snapshot
        .uncommitted_files(std::time::Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert!(
        young.is_empty(),
        "files younger than the minimum age are left: {young:?}"
    );
    let found = snapshot
        .uncommitted_files(std::time::Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("never-committed.parquet"), "{found:?}");
    assert!(orphan.exists(), "listing removes nothing");
    snapshot
        .uncommitted_files(std::time::Duration::ZERO, true)
        .await
        .unwrap();
    assert!(!orphan.exists(), "repair removes the uncommitted file");
    assert!(committed.exists(), "and only it");
    assert!(snapshot.check_files().await.is_empty());
}

#[tokio::test]
async fn compaction_replaces_small_files_with_the_same_rows_and_a_stream_lands_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path()).await;
    // Four commits of even offsets: four small files in the 09:00 partition.
    let mut previous = None;
    for round in 0..4 {
        let offsets: Vec<i64> = (0..5).map(|i| round * 10 + i * 2).collect();
        let last = *offsets.last().unwrap();
        sink.commit(&[rows(0, &offsets)], &[moved(0, previous, last)])
            .await
            .unwrap();
        previous = Some(last);
    }
    let before = snapshot_of(dir.path()).await;
    assert_eq!(before.files.len(), 4);

    let done = sluice_iceberg::compact::compact(
        "sensor_events",
        &catalog(dir.path()),
        &HashMap::new(),
        std::num::NonZeroU64::new(64 << 20).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        (done.files_removed, done.files_added, done.partitions),
        (4, 1, 1)
    );

    let after = open(dir.path()).await;
    let snapshot = after.table().metadata().current_snapshot().unwrap();
    assert_eq!(snapshot.summary().operation, Operation::Replace);
    assert_eq!(summary(&after, "total-records"), "20");
    assert_eq!(summary(&after, "deleted-records"), "20");
    assert_eq!(after.committed("sensor.events", 0).await.unwrap(), previous);
    let files = snapshot_of(dir.path()).await;
    assert_eq!(files.files.len(), 1);
    assert_eq!(files.files[0].records, 20);
    assert!(files.check_files().await.is_empty());

    // The stream's sink planned on the table before the compaction: it finds the table moved,
    // checks its offsets again (the replace carried them) and lands on top.
    sink.commit(&[rows(0, &[40, 41])], &[moved(0, previous, 41)])
        .await
        .unwrap();
    let last = open(dir.path()).await;
    assert_eq!(summary(&last, "total-records"), "22");
    assert_eq!(last.committed("sensor.events", 0).await.unwrap(), Some(41));
    let operations: Vec<Operation> = last
        .table()
        .metadata()
        .snapshots()
        .map(|s| s.summary().operation.clone())
        .collect();
    assert_eq!(
        operations
            .iter()
            .filter(|op| **op == Operation::Replace)
            .count(),
        1
    );
}

#[tokio::test]
async fn expiry_keeps_the_current_snapshot_and_removes_only_what_it_no_longer_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path()).await;
    let mut previous = None;
    for round in 0..3 {
        let offsets: Vec<i64> = (0..4).map(|i| round * 10 + i * 2).collect();
        let last = *offsets.last().unwrap();
        sink.commit(&[rows(0, &offsets)], &[moved(0, previous, last)])
            .await
            .unwrap();
        previous = Some(last);
    }
    let target = std::num::NonZeroU64::new(64 << 20).unwrap();
    let compacted = sluice_iceberg::compact::compact(
        "sensor_events",
        &catalog(dir.path()),
        &HashMap::new(),
        target,
    )
    .await
    .unwrap();
    assert_eq!(compacted.files_removed, 3);

    // A window longer than the table's age keeps everything.
    let kept = sluice_iceberg::expire::expire(
        "sensor_events",
        &catalog(dir.path()),
        &HashMap::new(),
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!((kept.snapshots_expired, kept.files_removed.len()), (0, 0));

    let expired = sluice_iceberg::expire::expire(
        "sensor_events",
        &catalog(dir.path()),
        &HashMap::new(),
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(expired.snapshots_expired, 3, "{expired:?}");
    let removed_data: Vec<&String> = (expired.files_removed.iter())
        .filter(|f| f.contains("/data/"))
        .collect();
    assert_eq!(
        removed_data.len(),
        3,
        "the three replaced files: {expired:?}"
    );
    assert!(
        expired
            .files_removed
            .iter()
            .any(|f| f.contains("/metadata/snap-")),
        "the expired snapshots' manifest lists: {expired:?}"
    );

    let reopened = open(dir.path()).await;
    assert_eq!(snapshots(&reopened), 1);
    assert_eq!(
        reopened.committed("sensor.events", 0).await.unwrap(),
        previous
    );
    let snapshot = snapshot_of(dir.path()).await;
    assert_eq!(snapshot.files.len(), 1);
    assert_eq!(snapshot.files[0].records, 12);
    assert!(snapshot.check_files().await.is_empty());

    // The stream goes on after it.
    sink.commit(&[rows(0, &[30, 31])], &[moved(0, previous, 31)])
        .await
        .unwrap();
    let last = open(dir.path()).await;
    assert_eq!(summary(&last, "total-records"), "14");
}
