//! Sensor telemetry, as in the seed pipeline: a fleet of devices on production lines reporting
//! temperature and vibration, with a small share of readings hot enough to raise alerts.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::{Generator, object, rfc3339_ms, rounded};

const DEVICES: u32 = 1_000;
const SITES: [&str; 4] = ["plant-a", "plant-b", "plant-c", "plant-d"];
const LINES: u32 = 8;

/// Generates sensor readings.
pub struct Sensor {
    rng: StdRng,
}

impl Sensor {
    /// A sensor generator drawing from `rng`.
    pub fn new(rng: StdRng) -> Self {
        Self { rng }
    }
}

impl Generator for Sensor {
    fn next_event(&mut self, event_time_ms: i64) -> Map<String, Value> {
        let device = self.rng.random_range(0..DEVICES);
        // Mostly normal operation around 60 °C; about 1 % of readings overheat.
        let temperature_c = if self.rng.random_bool(0.01) {
            self.rng.random_range(85.0..110.0)
        } else {
            55.0 + (0..4)
                .map(|_| self.rng.random_range(-5.0..5.0))
                .sum::<f64>()
        };
        let vibration_g = if self.rng.random_bool(0.005) {
            self.rng.random_range(0.5..1.5)
        } else {
            self.rng.random_range(0.01..0.3)
        };
        let status = match self.rng.random_range(0..100) {
            0 => "fault",
            1..=4 => "warn",
            _ => "ok",
        };
        object(json!({
            "device_id": format!("sensor-{device:04}"),
            "ts": rfc3339_ms(event_time_ms),
            "temperature_c": rounded(temperature_c, 2),
            "vibration_g": rounded(vibration_g, 3),
            "status": status,
            "site": SITES[(device % SITES.len() as u32) as usize],
            "line": format!("line-{}", device % LINES + 1),
        }))
    }

    fn default_key(&self) -> Option<&'static str> {
        Some("device_id")
    }
}
