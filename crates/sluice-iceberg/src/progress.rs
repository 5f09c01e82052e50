//! How far each source partition got, kept in the summary of every snapshot sluice commits
//! (as the Iceberg Kafka Connect sink keeps its offsets, but per partition, and for every
//! partition the table holds, not only the ones a commit moved): the table, not Kafka, says
//! where a member resumes.
//!
//! One summary property, [`PROGRESS_PROPERTY`], holds JSON:
//! `{"<topic>": {"<partition>": {"offset": N, "marks": {"<mark>": M}}}}`. A snapshot without it
//! (another engine's) is skipped: the newest ancestor of `main` carrying it is the table's
//! progress.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::TableMetadata;
use serde::{Deserialize, Serialize};
use sluice_lake::PartitionProgress;

/// The snapshot summary property holding the progress.
pub const PROGRESS_PROPERTY: &str = "sluice.progress";

/// The progress of every source partition a table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress(BTreeMap<String, BTreeMap<i32, Reached>>);

/// Where one source partition got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    /// The last offset committed.
    pub offset: i64,
    /// Further numbers recorded with it (a window's replay offset and watermarks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marks: BTreeMap<String, i64>,
}

impl Progress {
    /// The progress `metadata` records: from the newest snapshot of `main`'s ancestry carrying
    /// it, or none.
    pub fn of(metadata: &TableMetadata) -> Result<Self, String> {
        let mut snapshot = metadata.current_snapshot();
        while let Some(current) = snapshot {
            if let Some(json) = current
                .summary()
                .additional_properties
                .get(PROGRESS_PROPERTY)
            {
                return serde_json::from_str(json).map_err(|err| {
                    format!(
                        "snapshot {}: {PROGRESS_PROPERTY} is not sluice's progress: {err}",
                        current.snapshot_id()
                    )
                });
            }
            snapshot = current
                .parent_snapshot_id()
                .and_then(|parent| metadata.snapshot_by_id(parent));
        }
        Ok(Self::default())
    }

    /// The partition's entry.
    pub fn get(&self, topic: &str, partition: i32) -> Option<&Reached> {
        self.0.get(topic)?.get(&partition)
    }

    /// This progress moved on by `moves`.
    pub fn advanced(&self, moves: &[PartitionProgress]) -> Self {
        let mut next = self.clone();
        for moved in moves {
            next.0.entry(moved.topic.clone()).or_default().insert(
                moved.partition,
                Reached {
                    offset: moved.last_offset,
                    marks: moved
                        .marks
                        .iter()
                        .map(|(mark, value)| (mark.to_string(), *value))
                        .collect(),
                },
            );
        }
        next
    }

    /// The summary properties that record it.
    pub fn summary(&self) -> HashMap<String, String> {
        HashMap::from([(
            PROGRESS_PROPERTY.to_string(),
            serde_json::to_string(self).expect("maps of numbers serialize"),
        )])
    }

    /// Every partition's entry, by topic.
    pub fn partitions(&self) -> impl Iterator<Item = (&str, i32, &Reached)> {
        self.0.iter().flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .map(move |(partition, reached)| (topic.as_str(), *partition, reached))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_keeps_the_partitions_a_commit_did_not_move() {
        let moved = |partition, last_offset| PartitionProgress {
            topic: "sensor.events".to_string(),
            partition,
            previous: None,
            last_offset,
            marks: vec![("watermark", 7)],
        };
        let first = Progress::default().advanced(&[moved(0, 10), moved(1, 20)]);
        let second = first.advanced(&[moved(1, 25)]);
        assert_eq!(second.get("sensor.events", 0).unwrap().offset, 10);
        assert_eq!(second.get("sensor.events", 1).unwrap().offset, 25);
        assert_eq!(
            second.get("sensor.events", 1).unwrap().marks["watermark"],
            7
        );
        assert!(second.get("sensor.events", 2).is_none());
        let json = &second.summary()[PROGRESS_PROPERTY];
        assert_eq!(
            json,
            r#"{"sensor.events":{"0":{"offset":10,"marks":{"watermark":7}},"1":{"offset":25,"marks":{"watermark":7}}}}"#
        );
        assert_eq!(serde_json::from_str::<Progress>(json).unwrap(), second);
    }
}
