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
}
