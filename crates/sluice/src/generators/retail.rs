//! Retail point-of-sale sales, as in the seed pipeline: stores selling SKUs in small baskets.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::{Generator, object, rfc3339_ms, rounded};

const STORES: u32 = 50;
const SKUS: u32 = 5_000;

/// Generates sales.
pub struct Retail {
    rng: StdRng,
}

impl Retail {
    /// A retail generator drawing from `rng`.
    pub fn new(rng: StdRng) -> Self {
        Self { rng }
    }
}

impl Generator for Retail {
    fn next_event(&mut self, event_time_ms: i64) -> Map<String, Value> {
        let sku = self.rng.random_range(0..SKUS);
        // A SKU always has the same unit price, so sums by SKU make sense.
        let unit_price = 1.0 + f64::from(sku % 200) * 0.75;
        let quantity = self.rng.random_range(1..=5u32);
        object(json!({
            "store_id": format!("store-{:03}", self.rng.random_range(0..STORES)),
            "sale_id": format!("{:016x}", self.rng.random::<u64>()),
            "sku": format!("SKU-{sku:05}"),
            "quantity": quantity,
            "sale_amount": rounded(unit_price * f64::from(quantity), 2),
            "ts": rfc3339_ms(event_time_ms),
        }))
    }

    fn default_key(&self) -> Option<&'static str> {
        Some("store_id")
    }
}
