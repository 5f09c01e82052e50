//! The group watchdog: a member that holds no partition while partitions of its topics stay
//! behind their log ends in the lake, with nobody committing them, leaves the group and joins
//! it again.
//!
//! A healthy group never needs it. tansu 0.6 can leave a live member with an empty assignment
//! for good (docs/DESIGN.md, "tansu 0.6 consumer groups"): after a member was killed and
//! restarted in the same group, or after a broker restart that outlasted the session timeout.
//! Holding nothing is normal in a group with more members than partitions, so the member also
//! checks that the work is really orphaned: the lake's offsets of some partition are behind its
//! log end and have not moved for [`ORPHANED_AFTER`]. Rejoining costs a rebalance, never data:
//! lanes open from the lake, and a commit by a member that lost its partitions is fenced.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use sluice_kafka::admin::log_ranges;
use sluice_kafka::side::partition_count;
use tracing::{info, warn};

use super::opening::committed_offsets;
use super::{State, refresh_tables};

/// How long the member must hold nothing, and the lake stay still, before it rejoins (at
/// least; see `State::orphaned_after`): past the session timeout (10 s) and tansu's pauses
/// while a group forms (3 s per join).
const ORPHANED_AFTER: Duration = Duration::from_secs(30);

/// How often, while holding nothing, the lake and the log ends are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(10);

/// The longest wait between two rejoins; each rejoin that did not help doubles the wait.
const MAX_REJOIN_PAUSE: Duration = Duration::from_secs(300);

/// Per (topic, partition), the offset the lake's tables hold for it, one per table fed by it.
type LakePositions = HashMap<(String, i32), Vec<Option<i64>>>;

/// What one look saw.
struct Look {
    positions: LakePositions,
    /// The partitions whose lake offsets are behind their log ends.
    behind: Vec<(String, i32)>,
}

/// What the watchdog remembers between looks.
pub(super) struct GroupWatch {
    /// When the member last held a partition (or started, or rejoined).
    held_at: Instant,
    /// The first look since it stopped holding partitions (or since the last one that found
    /// nothing orphaned).
    first_look: Option<(Instant, Look)>,
    next_look: Instant,
    /// How long to wait after a rejoin before the next one.
    pause: Duration,
}

impl GroupWatch {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        Self {
            held_at: now,
            first_look: None,
            next_look: now,
            pause: ORPHANED_AFTER,
        }
    }
}

impl State {
    /// Rejoins the group when the member has held nothing for [`ORPHANED_AFTER`] (or twice
    /// the longest flush latency) while some partition of its topics was behind in the lake at
    /// the start and end of that time with no commit in between. Failing reads (the broker
    /// away) only postpone the look.
    pub(super) async fn watch_group(&mut self) -> Result<()> {
        let now = Instant::now();
        if !self.assigned.is_empty() {
            self.watch.held_at = now;
            self.watch.first_look = None;
            self.watch.pause = ORPHANED_AFTER;
            return Ok(());
        }
        if now < self.watch.next_look || now.duration_since(self.watch.held_at) < LOOK_EVERY {
            return Ok(());
        }
        self.watch.next_look = now + LOOK_EVERY;
        let look = match self.look().await {
            Ok(look) => look,
            Err(err) => {
                warn!(error = %format!("{err:#}"), "Holding no partition, and could not compare the lake with the log ends; will look again.");
                return Ok(());
            }
        };
        let Some((first_at, first)) = &self.watch.first_look else {
            self.watch.first_look = Some((now, look));
            return Ok(());
        };
        let held_nothing_for = now.duration_since(self.watch.held_at);
        let wait = self.orphaned_after();
        if now.duration_since(*first_at) < wait || held_nothing_for < self.watch.pause.max(wait) {
            return Ok(());
        }
        // Behind at both looks, and not one commit in between.
        let orphaned: Vec<&(String, i32)> = look
            .behind
            .iter()
            .filter(|key| first.behind.contains(*key))
            .filter(|key| first.positions.get(*key) == look.positions.get(*key))
            .collect();
        if orphaned.is_empty() {
            self.watch.first_look = Some((now, look));
            return Ok(());
        }
        warn!(held_nothing_for = ?held_nothing_for, ?orphaned, "This member holds no partition while these are behind their log ends and nobody committed them; leaving and rejoining the group.");
        tokio::task::block_in_place(|| self.consumer.rejoin())?;
        info!("Rejoined the consumer group; waiting for an assignment.");
        self.watch.held_at = now;
        self.watch.first_look = None;
        self.watch.pause = (self.watch.pause * 2).min(MAX_REJOIN_PAUSE);
        Ok(())
    }

    /// How long a partition must stay behind with no commit to count as orphaned: 30 s, or
    /// twice the longest flush latency, within which a live owner commits what it read.
    fn orphaned_after(&self) -> Duration {
        self.outputs
            .iter()
            .map(|routed| routed.output.flush.max_latency * 2)
            .max()
            .unwrap_or_default()
            .max(ORPHANED_AFTER)
    }

    /// The lake's positions and the partitions behind their log ends, now.
    async fn look(&mut self) -> Result<Look> {
        let positions = self.lake_positions().await?;
        let behind = self.behind(&positions)?;
        Ok(Look { positions, behind })
    }

    /// The lake's offsets of every partition of every topic read that a table records
    /// progress for, after reading the tables again.
    async fn lake_positions(&mut self) -> Result<LakePositions> {
        refresh_tables(&mut self.outputs, None).await?;
        let mut positions = LakePositions::new();
        for topic in self.sources.keys() {
            let partitions = tokio::task::block_in_place(|| partition_count(&self.client, topic))?;
            for partition in 0..partitions {
                let key = (topic.clone(), partition);
                let mut held = committed_offsets(&self.outputs, &key).await?;
                for routed in &self.outputs {
                    let feeds = routed.topic == *topic
                        || routed
                            .fed_by
                            .as_ref()
                            .is_some_and(|fed| fed.topic == *topic);
                    if feeds && routed.output.window_config().is_some() {
                        held.push(
                            routed
                                .output
                                .sink
                                .lock()
                                .await
                                .committed(topic, partition)
                                .await?,
                        );
                    }
                }
                if !held.is_empty() {
                    positions.insert(key, held);
                }
            }
        }
        Ok(positions)
    }

    /// The partitions whose lake offsets (the lowest over their tables) are behind their log
    /// ends.
    fn behind(&self, positions: &LakePositions) -> Result<Vec<(String, i32)>> {
        let keys: Vec<(String, i32)> = positions.keys().cloned().collect();
        let ranges = tokio::task::block_in_place(|| log_ranges(&self.client, &keys))?;
        Ok(keys
            .into_iter()
            .filter(|key| {
                let next = positions[key]
                    .iter()
                    .map(|held| held.map_or(0, |offset| offset + 1))
                    .min()
                    .unwrap_or(0);
                let range = ranges[key];
                next.max(range.start) < range.end
            })
            .collect())
    }
}
