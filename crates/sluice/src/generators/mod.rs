//! Event generators for `sluice produce` and `sluice up`: the seed pipelines' workloads.
//!
//! Each generator makes one JSON object per call from a seeded random source, so a given
//! `--seed` (and start time) always yields the same records; event time is handed in by the
//! producer, which paces it.

mod retail;
mod sensor;
mod users;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

pub use retail::Retail;
pub use sensor::Sensor;
pub use users::Users;

/// A source of generated events.
pub trait Generator: Send {
    /// The next event, stamped with `event_time_ms` (epoch milliseconds) in its `ts` field.
    fn next_event(&mut self, event_time_ms: i64) -> Map<String, Value>;

    /// The field records are keyed by unless `--key` says otherwise.
    fn default_key(&self) -> Option<&'static str>;
}

/// The generators `--generator` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Industrial sensor telemetry: device_id, ts, temperature_c, vibration_g, status, site, line.
    Sensor,
    /// Retail point-of-sale sales: store_id, sale_id, sku, quantity, sale_amount, ts.
    Retail,
    /// Random users: name, email, address and a salted hash of the zip code (never the zip).
    Users,
}

impl Kind {
    /// A generator of this kind seeded with `seed`; `salt` is for the users' zip hash.
    pub fn build(self, seed: u64, salt: Option<String>) -> Box<dyn Generator> {
        let rng = StdRng::seed_from_u64(seed);
        match self {
            Self::Sensor => Box::new(Sensor::new(rng)),
            Self::Retail => Box::new(Retail::new(rng)),
            Self::Users => Box::new(Users::new(rng, salt)),
        }
    }
}

/// The map inside a `json!` object literal.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => unreachable!("generators build objects, got {other}"),
    }
}

/// RFC 3339 text with milliseconds, the way producers commonly write event time.
fn rfc3339_ms(epoch_ms: i64) -> Value {
    let time = chrono::DateTime::from_timestamp_millis(epoch_ms)
        .expect("event time within chrono's range");
    Value::String(time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A value rounded to `places` decimals, as a JSON number.
fn rounded(value: f64, places: i32) -> Value {
    let scale = 10f64.powi(places);
    serde_json::Number::from_f64((value * scale).round() / scale).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
        for kind in [Kind::Sensor, Kind::Retail, Kind::Users] {
            let run = |seed| {
                let mut generator = kind.build(seed, None);
                (0..50)
                    .map(|i| generator.next_event(1_795_340_000_000 + i))
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(7), run(7), "{kind:?}");
            assert_ne!(run(7), run(8), "{kind:?}");
        }
    }

    #[test]
    fn event_time_is_rfc3339_in_ts() {
        let event = Kind::Sensor.build(1, None).next_event(1_795_342_500_250);
        assert_eq!(event["ts"], "2026-11-22T10:15:00.250Z");
    }
}
