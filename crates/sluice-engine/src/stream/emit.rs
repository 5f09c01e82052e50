//! The window side of a stream process: the stream's watermark moved into every lane after
//! each batch (closing windows), and window tables committed with their replay marks.

use std::time::Instant;

use anyhow::{Context, Result};

use super::Routed;
use super::State;
use crate::events::WatermarkMoved;
use crate::windows::{WindowLane, held_by_silence, stream_watermark};

impl State {
    /// Moves each window's close watermark in every lane of its stream to the stream's
    /// watermark ([`stream_watermark`]).
    pub(super) async fn advance_watermarks(&mut self) -> Result<()> {
        let now = Instant::now();
        for routed in &self.outputs {
            let Some(config) = routed.output.window_config() else {
                continue;
            };
            let partitions = self.window_partitions(routed);
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

    /// Whether some window's watermark is held back by a partition not heard from yet, which
    /// its idle timeout will leave out (see [`held_by_silence`]).
    pub(super) fn windows_held_by_silence(&self) -> bool {
        let now = Instant::now();
        self.outputs.iter().any(|routed| {
            routed.output.window_config().is_some_and(|config| {
                held_by_silence(self.window_partitions(routed), config.idle_timeout, now)
            })
        })
    }

    /// Each assigned partition of a window's topic: when it was assigned, and the window's
    /// state in its lane if the lane is open.
    fn window_partitions<'a>(
        &'a self,
        routed: &'a Routed,
    ) -> impl Iterator<Item = (Instant, Option<&'a WindowLane>)> + 'a {
        self.assigned
            .iter()
            .filter(|(key, _)| key.0 == routed.topic)
            .map(|(key, assigned_at)| {
                let state = self.lanes.get(key).map(|lane| &lane.windows[routed.slot]);
                (*assigned_at, state)
            })
    }
}
