//! Generated hostile spool files: random frames, random batch payloads, and real spool logs
//! with bytes flipped, cut or appended, as a disk or a crash could leave them. Opening never
//! panics or allocates what a length field merely claims: the spool opens with the batches
//! that check out, each read back exactly as appended, or refuses with the file and offset.

use proptest::prelude::*;

use super::*;

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes: 1 << 20,
        fsync: FsyncPolicy::Never,
    }
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    let record = (
        proptest::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(key, value)| Record { key, value });
    prop::collection::vec(record, 0..6)
}

#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Cut(usize),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Damage::Flip(at, xor)),
        any::<usize>().prop_map(Damage::Cut),
        prop::collection::vec(any::<u8>(), 1..24).prop_map(Damage::Append),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_parse_or_are_named_damage(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        if let Ok((payload, len)) = parse_frame(&bytes) {
            prop_assert!(len <= bytes.len() && payload.len() + HEADER == len && payload.len() >= 9);
        }
    }

    #[test]
    fn random_batch_payloads_decode_or_are_refused_with_a_reason(
        head in prop::collection::vec(any::<u8>(), 0..16),
        count in any::<u32>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // A plausible start (kind, seq, a short topic) so that the count field is reached.
        let mut payload = vec![KIND_BATCH];
        payload.extend_from_slice(&7u64.to_le_bytes());
        payload.extend_from_slice(&1u16.to_le_bytes());
        payload.push(b't');
        payload.extend_from_slice(&count.to_le_bytes());
        payload.extend_from_slice(&tail);
        for bytes in [&payload, &head] {
            if let Err(reason) = decode_batch(bytes) {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    #[test]
    fn batches_read_back_as_encoded(seq in any::<u64>(), topic in "[a-z_.]{0,20}", records in records()) {
        let decoded = decode_batch(&encode_batch(seq, &topic, &records)).unwrap();
        prop_assert_eq!(decoded, SpooledBatch { seq, topic, records });
    }

    #[test]
    fn a_damaged_log_opens_with_what_checks_out_or_names_the_damage(
        batches in prop::collection::vec(records(), 1..4),
        delivered_first in any::<bool>(),
        damages in prop::collection::vec(damage(), 1..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut appended = BTreeMap::new();
        {
            let (mut spool, _) = Spool::open(&config(dir.path())).unwrap();
            for records in &batches {
                appended.insert(spool.append("t", records).unwrap(), records.clone());
            }
            if delivered_first {
                spool.delivered(*appended.keys().next().unwrap()).unwrap();
            }
            spool.sync().unwrap();
        }
        let segment = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&segment).unwrap();
        for damage in &damages {
            match damage {
                Damage::Flip(at, xor) if !bytes.is_empty() => {
                    let at = at % bytes.len();
                    bytes[at] ^= xor;
                }
                Damage::Cut(at) => bytes.truncate(at % (bytes.len() + 1)),
                Damage::Append(extra) => bytes.extend_from_slice(extra),
                Damage::Flip(..) => {}
            }
        }
        std::fs::write(&segment, &bytes).unwrap();
        match Spool::open(&config(dir.path())) {
            Ok((spool, recovery)) => {
                prop_assert_eq!(recovery.pending, spool.pending());
                prop_assert!(spool.pending() <= appended.len());
                let mut seq = spool.first_pending();
                let mut seen = 0;
                while let Some(at) = seq {
                    let batch = spool.read(at).unwrap();
                    prop_assert_eq!(Some(&batch.records), appended.get(&at));
                    seen += 1;
                    seq = spool.pending.range(at + 1..).next().map(|(&s, _)| s);
                }
                prop_assert_eq!(seen, spool.pending());
            }
            Err(SpoolError::Corrupt { path, offset, reason }) => {
                prop_assert_eq!(path, segment);
                prop_assert!(offset < bytes.len() as u64 && !reason.is_empty());
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}

#[test]
fn a_record_count_the_payload_cannot_hold_is_refused_before_allocating() {
    let mut payload = vec![KIND_BATCH];
    payload.extend_from_slice(&1u64.to_le_bytes());
    payload.extend_from_slice(&1u16.to_le_bytes());
    payload.push(b't');
    payload.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_batch(&payload).unwrap_err(),
        "a batch of 4294967295 records in 0 bytes"
    );
}
