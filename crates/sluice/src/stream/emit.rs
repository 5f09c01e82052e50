//! The window side of a stream process: the stream's watermark moved into every lane after
//! each batch (closing windows), and window tables committed with their replay marks.

use std::time::Instant;

use anyhow::{Context, Result};

use super::windows::WindowLane;
use super::{State, Target, WindowOutput};

impl State {
    pub(super) fn window_states<'a>(
        &'a self,
        output: &'a WindowOutput,
    ) -> impl Iterator<Item = &'a WindowLane> + 'a {
        self.lanes
            .iter()
            .filter(move |((topic, _), _)| *topic == output.topic)
            .map(move |(_, lane)| &lane.windows[output.slot])
    }

    /// Moves each window's close watermark in every lane of its stream to the stream's
    /// watermark: the lowest lane watermark over its assigned partitions, leaving out those
    /// silent for the idle timeout. A partition that has delivered nothing yet holds it back
    /// until it has been assigned for that long.
    pub(super) async fn advance_watermarks(&mut self) -> Result<()> {
        let now = Instant::now();
        for output in &self.windows {
            let config = &output.config;
            let mut watermark: Option<i64> = None;
            let mut held = false;
            for (key, assigned_at) in self.assigned.iter().filter(|(k, _)| k.0 == output.topic) {
                let state = self.lanes.get(key).map(|lane| &lane.windows[output.slot]);
                let heard = state.map_or(*assigned_at, |w| w.last_arrival);
                if now.duration_since(heard) >= config.idle_timeout {
                    continue;
                }
                match state.and_then(|w| w.watermark()) {
                    Some(w) => watermark = Some(watermark.map_or(w, |m: i64| m.min(w))),
                    None => held = true,
                }
            }
            let Some(watermark) = watermark.filter(|_| !held) else {
                continue;
            };
            for ((topic, _), lane) in self.lanes.iter_mut() {
                if *topic == output.topic {
                    lane.windows[output.slot]
                        .advance(&config.aggregation, watermark)
                        .await
                        .with_context(|| format!("emitting windows of {}", config.name))?;
                }
            }
        }
        Ok(())
    }

    /// Commits one window table's emitted windows and marks from every lane in one commit.
    pub(super) async fn commit_window(&mut self, index: usize) -> Result<()> {
        let output = &self.windows[index];
        let (topic, slot) = (output.topic.clone(), output.slot);
        let (batches, progress) = self.gather(&topic, |lane| lane.windows[slot].take_pending());
        let Some(rows) = self
            .land(Target::Window(index), &batches, &progress)
            .await?
        else {
            return Ok(());
        };
        self.summary.windows += rows as u64;
        for p in &progress {
            if let Some(lane) = self.lanes.get_mut(&(p.topic.clone(), p.partition)) {
                lane.windows[slot].committed = Some(p.last_offset);
            }
        }
        Ok(())
    }
}
