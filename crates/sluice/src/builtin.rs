//! The sensor pipeline that `sluice up` runs, embedded from `examples/` so that the example
//! users read is the pipeline that runs.

use std::path::Path;

use sluice_core::{ConfigError, Pipeline};

/// The example pipeline file.
pub const SENSOR_PIPELINE: &str = include_str!("../../../examples/sensor.toml");
/// The JSON Schema it names.
pub const SENSOR_SCHEMA: &str = include_str!("../../../examples/schemas/sensor_event.schema.json");

/// The sensor pipeline with its table placed under `lake` (a directory or an `s3://` prefix).
pub fn sensor_pipeline(lake: &str) -> Result<Pipeline, ConfigError> {
    let mut pipeline =
        Pipeline::parse(Path::new("examples/sensor.toml"), SENSOR_PIPELINE, |name| {
            if name == "schemas/sensor_event.schema.json" {
                Ok(SENSOR_SCHEMA.to_string())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    name.to_string(),
                ))
            }
        })?;
    let lake = lake.trim_end_matches('/');
    for table in &mut pipeline.tables {
        table.uri = format!("{lake}/{}", table.name);
    }
    for window in &mut pipeline.windows {
        window.uri = format!("{lake}/{}", window.name);
    }
    Ok(pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pipeline_is_valid_and_follows_the_lake() {
        let pipeline = sensor_pipeline("s3://bucket/lake/").unwrap();
        assert_eq!(pipeline.tables[0].uri, "s3://bucket/lake/sensor_events");
        assert_eq!(pipeline.windows[0].uri, "s3://bucket/lake/device_1m");
        assert_eq!(pipeline.streams[0].topic, "sensor_events");
    }
}
