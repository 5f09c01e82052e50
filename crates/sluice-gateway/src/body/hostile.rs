//! Generated hostile bodies: random bytes under every content type and encoding, and valid
//! compressed bodies with bytes flipped or cut. Whatever comes, the body is split into at most
//! `max_records` records within the decompression limit, or refused as a whole with a 4xx and a
//! reason; each record is then produced or refused with a reason. Nothing panics.

use std::io::Write as _;

use proptest::prelude::*;

use super::*;
use crate::records::tests::checks;

fn limits() -> GatewayLimits {
    GatewayLimits {
        max_body: 1 << 16,
        max_decompressed_body: 1 << 14,
        max_records: 8,
        max_depth: 6,
        rate_per_key: None,
        max_concurrent: 1,
        header_timeout: std::time::Duration::from_secs(1),
        body_timeout: std::time::Duration::from_secs(1),
    }
}

/// What the gateway does with a body after its headers passed: decompress, split, check.
fn take(layout: Layout, encoding: Option<&str>, raw: Vec<u8>) -> Result<(), TestCaseError> {
    let limits = limits();
    let refused = |err: BodyError| -> Result<(), TestCaseError> {
        prop_assert!(
            matches!(err.status(), 400 | 413 | 415),
            "{err}: {}",
            err.status()
        );
        prop_assert!(!err.to_string().is_empty());
        Ok(())
    };
    let body = match decompress(encoding, Bytes::from(raw), limits.max_decompressed_body) {
        Ok(body) => body,
        Err(err) => return refused(err),
    };
    prop_assert!(body.len() <= limits.max_decompressed_body);
    let records = match split(layout, &body, &limits) {
        Ok(records) => records,
        Err(err) => return refused(err),
    };
    prop_assert!(!records.is_empty() && records.len() <= limits.max_records);
    let checks = checks();
    for record in records {
        prop_assert!(!record.trim_ascii().is_empty());
        if let Err(reason) = checks.check(record) {
            prop_assert!(!reason.trim().is_empty());
        }
    }
    Ok(())
}

fn layouts() -> impl Strategy<Value = Layout> {
    prop_oneof![Just(Layout::Json), Just(Layout::Ndjson)]
}

fn compressed(encoding: &str, text: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(text).unwrap();
            gz.finish().unwrap()
        }
        _ => zstd::encode_all(text, 1).unwrap(),
    }
}

/// Sensor-like records, some good, some not, some many and deep.
fn record_texts() -> impl Strategy<Value = Vec<String>> {
    let text = prop_oneof![
        "[a-z0-9]{1,6}".prop_map(|d| format!(
            r#"{{"device_id":"{d}","ts":"2026-11-22T10:00:00Z","temperature_c":1.5}}"#
        )),
        Just(r#"{"device_id":[[[[[[[{}]]]]]]]}"#.to_string()),
        Just("[1,2]".to_string()),
        "[ -~]{0,40}",
    ];
    prop::collection::vec(text, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_split_or_refused_whole(
        raw in prop::collection::vec(any::<u8>(), 0..2048),
        layout in layouts(),
        encoding in prop::sample::select(vec![None, Some("identity"), Some("gzip"), Some("zstd"), Some("br")]),
    ) {
        take(layout, encoding, raw)?;
    }

    #[test]
    fn damaged_compressed_bodies_are_refused_or_read_within_the_limits(
        texts in record_texts(),
        layout in layouts(),
        encoding in prop::sample::select(vec!["gzip", "zstd"]),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let text = match layout {
            Layout::Ndjson => texts.join("\n"),
            Layout::Json => format!("[{}]", texts.join(",")),
        };
        let mut raw = compressed(encoding, text.as_bytes());
        for (at, byte) in flips {
            let at = at % raw.len();
            raw[at] = byte;
        }
        if let Some(cut) = cut {
            raw.truncate(cut % (raw.len() + 1));
        }
        take(layout, Some(encoding), raw)?;
    }
}

#[test]
fn records_past_the_limit_are_counted_not_kept() {
    let limits = limits();
    let ndjson = Bytes::from("{}\n".repeat(1000));
    let json = Bytes::from(format!("[{}]", vec!["{}"; 1000].join(",")));
    for (layout, body) in [(Layout::Ndjson, ndjson), (Layout::Json, json)] {
        assert_eq!(
            split(layout, &body, &limits).unwrap_err(),
            BodyError::TooManyRecords {
                count: 1000,
                limit: 8
            }
        );
    }
    // Exactly the limit is fine, and what follows an array is still refused.
    let eight = Bytes::from(format!("[{}]", ["{}"; 8].join(",")));
    assert_eq!(split(Layout::Json, &eight, &limits).unwrap().len(), 8);
    let trailing = Bytes::from_static(b"[{}] {}");
    assert_eq!(
        split(Layout::Json, &trailing, &limits)
            .unwrap_err()
            .status(),
        400
    );
}
