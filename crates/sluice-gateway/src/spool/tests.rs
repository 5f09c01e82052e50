//! The spool against what crashes and disks leave behind.

use std::io::Write as _;

use super::*;

fn config(dir: &Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes,
        fsync: FsyncPolicy::Always,
    }
}

fn batch(n: usize, tag: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: (i % 2 == 0).then(|| format!("k{i}").into_bytes()),
            value: format!("{{\"tag\":\"{tag}\",\"i\":{i}}}").into_bytes(),
        })
        .collect()
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

#[test]
fn batches_come_back_in_order_until_delivered_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, recovery) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(recovery, Recovery::default());
    let a = spool.append("t", &batch(3, "a")).unwrap();
    let b = spool.append("u", &batch(2, "b")).unwrap();
    assert!(a < b);
    assert_eq!(spool.read(b).unwrap().records, batch(2, "b"));
    spool.delivered(a).unwrap();
    drop(spool);

    let (spool, recovery) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(recovery.pending, 1);
    assert!(!recovery.torn_tail);
    assert_eq!(spool.first_pending(), Some(b));
    let back = spool.read(b).unwrap();
    assert_eq!((back.topic.as_str(), back.records), ("u", batch(2, "b")));
}

#[test]
fn a_torn_tail_is_cut_back_to_the_last_whole_frame_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    for tag in ["a", "b", "c"] {
        spool.append("t", &batch(4, tag)).unwrap();
    }
    drop(spool);
    let path = only_segment(dir.path());
    let whole = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of the third append: its frame is cut short.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(whole - 7).unwrap();
    drop(file);

    let (mut spool, recovery) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(recovery.pending, 2);
    assert!(recovery.torn_tail);
    let third_frame = whole - spool.bytes();
    assert_eq!(recovery.torn_bytes, third_frame - 7);
    // Appending goes on after the cut, and the log reads back whole.
    let d = spool.append("t", &batch(1, "d")).unwrap();
    drop(spool);
    let (spool, recovery) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    assert_eq!((recovery.pending, recovery.torn_tail), (3, false));
    assert_eq!(spool.read(d).unwrap().records, batch(1, "d"));
}

#[test]
fn zeroes_or_a_bad_crc_at_the_end_are_a_torn_tail() {
    for tail in [vec![0u8; 4096], {
        // A whole frame whose payload was not all written: the CRC does not match.
        let payload = encode_batch(9, "t", &batch(1, "z"));
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend(std::iter::repeat_n(0u8, payload.len()));
        frame
    }] {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
        spool.append("t", &batch(2, "a")).unwrap();
        drop(spool);
        let mut file = OpenOptions::new()
            .append(true)
            .open(only_segment(dir.path()))
            .unwrap();
        file.write_all(&tail).unwrap();
        drop(file);
        let (_, recovery) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
        assert_eq!(recovery.pending, 1);
        assert_eq!(recovery.torn_bytes, tail.len() as u64);
    }
}

#[test]
fn damage_before_the_tail_is_refused_with_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    spool.append("t", &batch(2, "a")).unwrap();
    let second = spool.bytes();
    spool.append("t", &batch(2, "b")).unwrap();
    spool.append("t", &batch(2, "c")).unwrap();
    drop(spool);
    let path = only_segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[second as usize + HEADER + 20] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let err = Spool::open(&config(dir.path(), 1 << 20)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string())
            && message.contains(&format!("byte {second}"))
            && message.contains("CRC"),
        "{message}"
    );
    // Nothing was cut.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_full_spool_refuses_appends_and_delivered_batches_free_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(&config(dir.path(), 2_000)).unwrap();
    spool.segment_bytes = 300;
    let mut seqs = Vec::new();
    let full = loop {
        match spool.append("t", &batch(5, "x")) {
            Ok(seq) => seqs.push(seq),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(full, SpoolError::Full { max: 2_000, .. }),
        "{full}"
    );
    assert!(seqs.len() >= 4, "{seqs:?}");
    let segments = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(segments > 1, "{segments} segments");
    for seq in &seqs {
        spool.delivered(*seq).unwrap();
    }
    assert_eq!(spool.pending(), 0);
    assert_eq!(spool.bytes(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let next = spool.append("t", &batch(5, "y")).unwrap();
    assert!(next > *seqs.last().unwrap());
    drop(spool);
    let (spool, recovery) = Spool::open(&config(dir.path(), 2_000)).unwrap();
    assert_eq!(recovery.pending, 1);
    assert_eq!(spool.read(next).unwrap().records, batch(5, "y"));
}

#[test]
fn delivered_marks_in_a_newer_segment_keep_an_older_batch_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    spool.segment_bytes = 100;
    let a = spool.append("t", &batch(5, "a")).unwrap();
    let b = spool.append("t", &batch(5, "b")).unwrap();
    let c = spool.append("t", &batch(5, "c")).unwrap();
    // b is delivered before a (deliveries finish out of order); its mark lands in c's segment.
    spool.delivered(b).unwrap();
    drop(spool);
    let (mut spool, recovery) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(recovery.pending, 2);
    assert_eq!(spool.first_pending(), Some(a));
    spool.delivered(a).unwrap();
    drop(spool);
    let (spool, _) = Spool::open(&config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(spool.first_pending(), Some(c));
    assert_eq!(spool.pending(), 1);
}
