//! The window side of a stream process: the stream's watermark moved into every lane after
//! each batch (closing windows), and window tables committed with their replay marks.

use std::time::Instant;

use anyhow::{Context, Result};

use super::State;
use crate::events::WatermarkMoved;
use crate::windows::stream_watermark;

impl State {
    /// Moves each window's close watermark in every lane of its stream to the stream's
    /// watermark ([`stream_watermark`]).
    pub(super) async fn advance_watermarks(&mut self) -> Result<()> {
        let now = Instant::now();
        for routed in &self.outputs {
            let Some(config) = routed.output.window_config() else {
                continue;
            };
            let partitions = self
                .assigned
                .iter()
                .filter(|(key, _)| key.0 == routed.topic)
                .map(|(key, assigned_at)| {
                    let state = self.lanes.get(key).map(|lane| &lane.windows[routed.slot]);
                    (*assigned_at, state)
                });
            let Some(watermark) = stream_watermark(partitions, config.idle_timeout, now) else {
                continue;
            };
            self.metrics.emit(WatermarkMoved {
                window: &config.name,
                watermark_us: watermark,
            });
            for ((topic, _), lane) in self.lanes.iter_mut() {
                if *topic == routed.topic {
                    lane.windows[routed.slot]
                        .advance(&config.aggregation, watermark)
                        .await
                        .with_context(|| format!("emitting windows of {}", config.name))?;
                }
            }
        }
        Ok(())
    }

    /// Commits one window table's emitted windows and marks from every lane in one commit,
    /// with how far the stream's lanes forwarded for a repartitioned window (the oldest
    /// received at `received`).
    pub(super) async fn commit_window(
        &mut self,
        index: usize,
        received: Option<Instant>,
    ) -> Result<()> {
        let routed = &self.outputs[index];
        let (topic, slot) = (routed.topic.clone(), routed.slot);
        let fed_by = routed.fed_by.clone();
        let (batches, mut progress) = self.gather(&topic, |lane| lane.windows[slot].take_pending());
        if let Some(fed) = &fed_by {
            let (_, forwarded) =
                self.gather(&fed.topic, |lane| lane.forwards[fed.forward].take_pending());
            progress.extend(forwarded);
        }
        if !self.land(index, &batches, &progress, received).await? {
            return Ok(());
        }
        for p in &progress {
            if let Some(lane) = self.lanes.get_mut(&(p.topic.clone(), p.partition)) {
                match &fed_by {
                    Some(fed) if fed.topic == p.topic => {
                        lane.forwards[fed.forward].committed = Some(p.last_offset);
                    }
                    _ => lane.windows[slot].committed = Some(p.last_offset),
                }
            }
        }
        Ok(())
    }
}
