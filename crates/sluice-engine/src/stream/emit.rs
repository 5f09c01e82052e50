//! The window side of a stream process: the stream's watermark moved into every lane after
//! each batch (closing windows), and window tables committed with their replay marks.

use std::time::Instant;

use anyhow::{Context, Result};

use super::{State, Target, WindowOutput};
use crate::events::WatermarkMoved;
use crate::windows::{WindowLane, stream_watermark};

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

    /// When the oldest uncommitted progress of a window table arrived: emitted windows, or
    /// events forwarded to its repartition topic.
    pub(super) fn window_since(&self, output: &WindowOutput) -> Option<Instant> {
        let states = self.window_states(output).filter_map(WindowLane::since);
        let forwards = output.fed_by.iter().flat_map(|(topic, slot, _)| {
            self.lanes
                .iter()
                .filter(move |((t, _), _)| t == topic)
                .filter_map(move |(_, lane)| lane.forwards[*slot].since())
        });
        states.chain(forwards).min()
    }

    /// Moves each window's close watermark in every lane of its stream to the stream's
    /// watermark ([`stream_watermark`]).
    pub(super) async fn advance_watermarks(&mut self) -> Result<()> {
        let now = Instant::now();
        for output in &self.windows {
            let config = &output.config;
            let partitions = self
                .assigned
                .iter()
                .filter(|(key, _)| key.0 == output.topic)
                .map(|(key, assigned_at)| {
                    let state = self.lanes.get(key).map(|lane| &lane.windows[output.slot]);
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

    /// Commits one window table's emitted windows and marks from every lane in one commit,
    /// with how far the stream's lanes forwarded for a repartitioned window.
    pub(super) async fn commit_window(&mut self, index: usize) -> Result<()> {
        let output = &self.windows[index];
        let (topic, slot) = (output.topic.clone(), output.slot);
        let fed_by = output.fed_by.clone();
        let (batches, mut progress) = self.gather(&topic, |lane| lane.windows[slot].take_pending());
        if let Some((stream_topic, forward, _)) = &fed_by {
            let (_, forwarded) =
                self.gather(stream_topic, |lane| lane.forwards[*forward].take_pending());
            progress.extend(forwarded);
        }
        if self
            .land(Target::Window(index), &batches, &progress)
            .await?
            .is_none()
        {
            return Ok(());
        }
        for p in &progress {
            if let Some(lane) = self.lanes.get_mut(&(p.topic.clone(), p.partition)) {
                match &fed_by {
                    Some((stream_topic, forward, _)) if *stream_topic == p.topic => {
                        lane.forwards[*forward].committed = Some(p.last_offset);
                    }
                    _ => lane.windows[slot].committed = Some(p.last_offset),
                }
            }
        }
        Ok(())
    }
}
