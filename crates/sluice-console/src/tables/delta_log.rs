//! A Delta table's latest commits read from their JSON entries: what each did (files added and
//! removed, rows and bytes added), the source offsets its `txn` actions carried (app id
//! `sluice:<table>:<topic>:<partition>`; side-record marks have one more part and are left
//! out) and the columns it added. A version whose entry was cleaned up after a checkpoint
//! shows as `expired`.

use deltalake::DeltaTable;
use futures::StreamExt;
use serde_json::Value;
use sluice_lake::evolution::schema_history;

use super::{CommitInfo, Offset, error_chain};

/// Commit entries read at once.
const READ_AHEAD: usize = 8;

/// Up to `count` commits, from `version` down.
pub(super) async fn commits(
    table: &DeltaTable,
    version: u64,
    count: u64,
) -> Result<Vec<CommitInfo>, String> {
    let store = table.log_store();
    let versions = (version.saturating_sub(count - 1)..=version).rev();
    futures::stream::iter(versions)
        .map(|v| {
            let store = store.clone();
            async move {
                let entry = store
                    .read_commit_entry(v)
                    .await
                    .map_err(|err| format!("reading commit {v}: {}", error_chain(&err)))?;
                Ok(match entry {
                    Some(bytes) => commit(v, &bytes),
                    None => CommitInfo {
                        version: v,
                        operation: "expired".into(),
                        ..CommitInfo::default()
                    },
                })
            }
        })
        .buffered(READ_AHEAD)
        .collect::<Vec<Result<_, String>>>()
        .await
        .into_iter()
        .collect()
}

/// What the commit entry `bytes` of `version` did.
pub(super) fn commit(version: u64, bytes: &[u8]) -> CommitInfo {
    let mut info = CommitInfo {
        version,
        ..CommitInfo::default()
    };
    let actions =
        (bytes.split(|b| *b == b'\n')).filter_map(|line| serde_json::from_slice(line).ok());
    for action in actions {
        let Value::Object(action) = action else {
            continue;
        };
        for (kind, body) in action {
            match kind.as_str() {
                "commitInfo" => {
                    info.timestamp_ms = body["timestamp"].as_i64();
                    info.operation = body["operation"].as_str().unwrap_or_default().into();
                }
                "add" => {
                    info.files_added += 1;
                    info.bytes_added += body["size"].as_u64().unwrap_or(0);
                    let stats = body["stats"].as_str().and_then(|s| {
                        serde_json::from_str::<Value>(s).ok()?["numRecords"].as_u64()
                    });
                    info.rows_added += stats.unwrap_or(0);
                }
                "remove" => info.files_removed += 1,
                "txn" => info.offsets.extend(offset(&body)),
                "metaData" if version > 0 => info.schema_change = schema_change(&body),
                _ => {}
            }
        }
    }
    info
}

/// The source offset a `txn` action records, when it is one.
fn offset(txn: &Value) -> Option<Offset> {
    let app_id = txn["appId"].as_str()?.strip_prefix("sluice:")?;
    let parts: Vec<&str> = app_id.split(':').collect();
    let [_table, topic, partition] = parts.as_slice() else {
        return None;
    };
    Some(Offset {
        topic: topic.to_string(),
        partition: partition.parse().ok()?,
        offset: txn["version"].as_i64()?,
    })
}

/// The columns a `metaData` action added, as `sluice tables` words it.
fn schema_change(metadata: &Value) -> Option<String> {
    let configuration: std::collections::HashMap<String, String> =
        serde_json::from_value(metadata["configuration"].clone()).ok()?;
    let change = schema_history(&configuration).pop()?;
    let added: Vec<String> = (change.added.iter())
        .map(|(name, ty)| format!("{name} ({ty})"))
        .collect();
    Some(format!("added {}", added.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_entry_says_what_it_did_and_which_offsets_it_carried() {
        let entry = br#"{"commitInfo":{"timestamp":1764770000000,"operation":"WRITE"}}
{"add":{"path":"date=2026-12-03/hour=15/a.parquet","size":1000,"stats":"{\"numRecords\":40}","partitionValues":{},"modificationTime":0,"dataChange":true}}
{"add":{"path":"date=2026-12-03/hour=16/b.parquet","size":500,"stats":"{\"numRecords\":2}","partitionValues":{},"modificationTime":0,"dataChange":true}}
{"remove":{"path":"old.parquet","dataChange":false}}
{"txn":{"appId":"sluice:sensor_events:sensor_events:3","version":1234}}
{"txn":{"appId":"sluice:sensor_events:sensor_events:3:sensor_events_dlq","version":1200}}
{"txn":{"appId":"someone-else","version":7}}
"#;
        let info = commit(5, entry);
        assert_eq!(
            info,
            CommitInfo {
                version: 5,
                timestamp_ms: Some(1764770000000),
                operation: "WRITE".into(),
                files_added: 2,
                files_removed: 1,
                rows_added: 42,
                bytes_added: 1500,
                offsets: vec![Offset {
                    topic: "sensor_events".into(),
                    partition: 3,
                    offset: 1234,
                }],
                schema_change: None,
            }
        );
    }
}
