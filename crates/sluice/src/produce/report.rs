//! The producer report: what was acknowledged, per partition and per key, written when
//! `sluice produce` exits so that `sluice verify` can compare the lake against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Acknowledged records of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Records acknowledged.
    pub records: u64,
    /// Lowest acknowledged offset.
    pub first_offset: i64,
    /// Highest acknowledged offset.
    pub last_offset: i64,
}

/// Everything one `sluice produce` run got acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProducerReport {
    /// The topic produced to.
    pub topic: String,
    /// Records acknowledged by the broker (acks=all).
    pub records: u64,
    /// Records that failed and were not acknowledged.
    pub failed: u64,
    /// Per partition id.
    pub partitions: BTreeMap<i32, PartitionReport>,
    /// Records per key (records without a key are counted under "").
    pub keys: BTreeMap<String, u64>,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
}

impl ProducerReport {
    /// A report for `topic` with nothing acknowledged yet.
    pub fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_string(),
            ..Self::default()
        }
    }

    /// Counts one acknowledged record.
    pub fn acknowledged(&mut self, key: Option<&str>, partition: i32, offset: i64) {
        self.records += 1;
        *self
            .keys
            .entry(key.unwrap_or_default().to_string())
            .or_default() += 1;
        let entry = self.partitions.entry(partition).or_insert(PartitionReport {
            records: 0,
            first_offset: offset,
            last_offset: offset,
        });
        entry.records += 1;
        entry.first_offset = entry.first_offset.min(offset);
        entry.last_offset = entry.last_offset.max(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_add_up_per_partition_and_key_in_any_order() {
        let mut report = ProducerReport::new("t");
        for (key, partition, offset) in [("a", 0, 5), ("b", 0, 3), ("a", 1, 0), (("a"), 0, 4)] {
            report.acknowledged(Some(key), partition, offset);
        }
        report.acknowledged(None, 1, 1);
        assert_eq!(report.records, 5);
        assert_eq!(
            report.partitions[&0],
            PartitionReport {
                records: 3,
                first_offset: 3,
                last_offset: 5
            }
        );
        assert_eq!(report.partitions[&1].records, 2);
        assert_eq!(report.keys["a"], 3);
        assert_eq!(report.keys[""], 1);
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(
            serde_json::from_str::<ProducerReport>(&json).unwrap(),
            report
        );
    }
}
