//! Random users, as in the seed pipeline, with the zip code stored only as a salted SHA-256
//! hash: the raw zip never leaves the generator.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Generator, object, rfc3339_ms};

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Alan", "Radia",
    "Edsger", "Hedy",
];
const LAST: [&str; 12] = [
    "Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen",
    "Turing", "Perlman", "Dijkstra", "Lamarr",
];
const STREETS: [&str; 8] = [
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Lake", "Hill",
];
const CITIES: [&str; 6] = [
    "Springfield",
    "Riverton",
    "Fairview",
    "Madison",
    "Georgetown",
    "Salem",
];

/// Generates users.
pub struct Users {
    rng: StdRng,
    salt: String,
}

impl Users {
    /// A users generator drawing from `rng`; without a `salt`, one is drawn from `rng` (so it
    /// is fixed by `--seed`, and secret to anyone who does not know the seed).
    pub fn new(mut rng: StdRng, salt: Option<String>) -> Self {
        let salt = salt.unwrap_or_else(|| format!("{:032x}", rng.random::<u128>()));
        Self { rng, salt }
    }

    fn zip_hash(&self, zip: &str) -> String {
        let digest = Sha256::new()
            .chain_update(self.salt.as_bytes())
            .chain_update(zip.as_bytes())
            .finalize();
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl Generator for Users {
    fn next_event(&mut self, event_time_ms: i64) -> Map<String, Value> {
        let first = FIRST[self.rng.random_range(0..FIRST.len())];
        let last = LAST[self.rng.random_range(0..LAST.len())];
        let n = self.rng.random_range(1..10_000);
        let zip = format!("{:05}", self.rng.random_range(501..99_951));
        let address = format!(
            "{} {} St, {}",
            self.rng.random_range(1..2_000),
            STREETS[self.rng.random_range(0..STREETS.len())],
            CITIES[self.rng.random_range(0..CITIES.len())]
        );
        object(json!({
            "name": format!("{first} {last}"),
            "email": format!("{}.{}{n}@example.com", first.to_lowercase(), last.to_lowercase()),
            "address": address,
            "zip_hash": self.zip_hash(&zip),
            "ts": rfc3339_ms(event_time_ms),
        }))
    }

    fn default_key(&self) -> Option<&'static str> {
        Some("email")
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_zip_is_only_stored_as_a_salted_hash() {
        let mut users = Users::new(StdRng::seed_from_u64(3), Some("pepper".into()));
        let event = users.next_event(0);
        let hash = event["zip_hash"].as_str().unwrap();
        assert_eq!(hash.len(), 64);
        assert!(!event.contains_key("zip"));
        let unsalted = Users::new(StdRng::seed_from_u64(3), Some(String::new())).next_event(0);
        assert_ne!(unsalted["zip_hash"], event["zip_hash"]);
    }
}
