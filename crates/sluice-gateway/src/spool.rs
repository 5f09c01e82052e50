//! The spool: a write-ahead log on local disk that holds accepted batches while Kafka is down or
//! too slow (the role SQS plays in front of a Lambda producer).
//!
//! The log is a directory of segment files named after the first batch sequence number they
//! hold. Each entry is a frame `[length u32][crc32 u32][payload]` (little endian), so a reader can
//! tell a complete entry from a torn or corrupt one. A payload is either a batch (its sequence
//! number, topic and records) or a "delivered" mark for a batch that reached Kafka. On open the
//! log is replayed: batches without a mark are pending, in sequence order. A torn tail of the
//! newest segment — what a crash in the middle of an append leaves — is cut back to the last
//! valid frame and counted; damage anywhere else is refused with the file and byte offset, since
//! cutting there would lose acknowledged records.
//!
//! A segment is deleted once it and every older segment hold no pending batch (delivered marks
//! for old batches may live in newer segments, so segments go oldest first).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sluice_core::config::{FsyncPolicy, SpoolConfig};

use crate::Record;

/// A new segment is started once the active one is this large.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Frame header: length and CRC.
const HEADER: usize = 8;
/// The largest frame a reader accepts; a longer length field means damage, not data.
const MAX_FRAME: usize = 1 << 30;
const KIND_BATCH: u8 = 1;
const KIND_DELIVERED: u8 = 2;
/// A record without a key.
const NO_KEY: u32 = u32::MAX;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Appending would take the spool past its size limit.
    #[error("the spool is full ({bytes} of {max} bytes)")]
    Full {
        /// Bytes held now.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A file could not be read or written.
    #[error("spool file {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A segment other than the newest is damaged.
    #[error(
        "spool segment {} is damaged at byte {offset} ({reason}), and it is not the newest \
         segment's tail, so cutting it would lose acknowledged records; move the file aside \
         to start without it",
        path.display()
    )]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What opening the spool found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Batches not yet delivered to Kafka.
    pub pending: usize,
    /// Whether a torn tail was cut off.
    pub torn_tail: bool,
    /// Bytes cut off.
    pub torn_bytes: u64,
}

/// A batch read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledBatch {
    /// Its sequence number.
    pub seq: u64,
    /// The topic its records go to.
    pub topic: String,
    /// Its records, in order.
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
}

/// The open spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    fsync: FsyncPolicy,
    /// Segment first sequence → its size in bytes.
    segments: BTreeMap<u64, u64>,
    active: File,
    active_first: u64,
    next_seq: u64,
    pending: BTreeMap<u64, Location>,
    unsynced: bool,
    /// A new segment starts beyond this size.
    segment_bytes: u64,
}

impl Spool {
    /// Opens (or creates) the spool directory and replays it.
    pub fn open(config: &SpoolConfig) -> Result<(Self, Recovery), SpoolError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut firsts: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(io_at(&dir))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        let mut pending = BTreeMap::new();
        let mut next_seq = 0;
        for (i, &first) in firsts.iter().enumerate() {
            let path = segment_path(&dir, first);
            let newest = i + 1 == firsts.len();
            let bytes = std::fs::read(&path).map_err(io_at(&path))?;
            let mut offset = 0usize;
            while offset < bytes.len() {
                match parse_frame(&bytes[offset..]) {
                    Ok((payload, len)) => {
                        match payload.first() {
                            Some(&KIND_BATCH) => {
                                let seq = read_u64(&payload[1..]);
                                next_seq = next_seq.max(seq + 1);
                                pending.insert(
                                    seq,
                                    Location {
                                        segment: first,
                                        offset: offset as u64,
                                    },
                                );
                            }
                            Some(&KIND_DELIVERED) => {
                                pending.remove(&read_u64(&payload[1..]));
                            }
                            _ => {}
                        }
                        offset += len;
                    }
                    Err(Damage::Torn(reason)) if newest => {
                        let cut = (bytes.len() - offset) as u64;
                        tracing::warn!(
                            segment = %path.display(), offset, cut, %reason,
                            "the spool's tail is torn (a crash during an append): cutting it"
                        );
                        let file = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io_at(&path))?;
                        file.set_len(offset as u64).map_err(io_at(&path))?;
                        file.sync_all().map_err(io_at(&path))?;
                        recovery.torn_tail = true;
                        recovery.torn_bytes = cut;
                        break;
                    }
                    Err(Damage::Torn(reason) | Damage::Corrupt(reason)) => {
                        return Err(SpoolError::Corrupt {
                            path,
                            offset: offset as u64,
                            reason,
                        });
                    }
                }
            }
            segments.insert(first, offset as u64);
        }
        let active_first = match segments.last_key_value() {
            Some((&first, _)) => first,
            None => {
                segments.insert(next_seq, 0);
                next_seq
            }
        };
        let next_seq = next_seq.max(active_first);
        let active = open_append(&segment_path(&dir, active_first))?;
        recovery.pending = pending.len();
        let mut spool = Self {
            dir,
            max_bytes: config.max_bytes,
            fsync: config.fsync,
            segments,
            active,
            active_first,
            next_seq,
            pending,
            unsynced: false,
            segment_bytes: SEGMENT_BYTES,
        };
        spool.delete_delivered_segments()?;
        Ok((spool, recovery))
    }

    /// Appends a batch and returns its sequence number; synced before returning when the
    /// policy is `always`.
    pub fn append(&mut self, topic: &str, records: &[Record]) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        let payload = encode_batch(seq, topic, records);
        let frame_len = (HEADER + payload.len()) as u64;
        let bytes = self.bytes();
        if bytes + frame_len > self.max_bytes {
            return Err(SpoolError::Full {
                bytes,
                max: self.max_bytes,
            });
        }
        if self.segments[&self.active_first] >= self.segment_bytes {
            self.roll(seq)?;
        }
        let offset = self.write_frame(&payload)?;
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Location {
                segment: self.active_first,
                offset,
            },
        );
        if self.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok(seq)
    }

    /// Marks a batch delivered to Kafka; segments left with nothing pending are deleted.
    pub fn delivered(&mut self, seq: u64) -> Result<(), SpoolError> {
        if self.pending.remove(&seq).is_none() {
            return Ok(());
        }
        let mut payload = vec![KIND_DELIVERED];
        payload.extend_from_slice(&seq.to_le_bytes());
        self.write_frame(&payload)?;
        if self.pending.is_empty() {
            // Nothing left to deliver: start afresh so the old segments can go.
            self.roll(self.next_seq)?;
        }
        self.delete_delivered_segments()
    }

    /// Reads a pending batch back.
    pub fn read(&self, seq: u64) -> Result<SpooledBatch, SpoolError> {
        let location = self.pending.get(&seq).ok_or_else(|| SpoolError::Corrupt {
            path: self.dir.clone(),
            offset: 0,
            reason: format!("batch {seq} is not pending"),
        })?;
        let path = segment_path(&self.dir, location.segment);
        let mut file = File::open(&path).map_err(io_at(&path))?;
        let size = file.metadata().map_err(io_at(&path))?.len();
        file.seek(SeekFrom::Start(location.offset))
            .map_err(io_at(&path))?;
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header).map_err(io_at(&path))?;
        let damaged = |reason: String| SpoolError::Corrupt {
            path: path.clone(),
            offset: location.offset,
            reason,
        };
        // The length is checked against the file before anything is allocated for it: the
        // file may have changed since it was replayed.
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let left = size.saturating_sub(location.offset + HEADER as u64);
        if len == 0 || len > MAX_FRAME || len as u64 > left {
            return Err(damaged(format!("a frame of {len} bytes with {left} left")));
        }
        let mut frame = header.to_vec();
        frame.resize(HEADER + len, 0);
        file.read_exact(&mut frame[HEADER..])
            .map_err(io_at(&path))?;
        let (payload, _) = parse_frame(&frame).map_err(|damage| damaged(damage.to_string()))?;
        decode_batch(payload).map_err(damaged)
    }

    /// The oldest batch not yet delivered.
    pub fn first_pending(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }

    /// Batches not yet delivered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }

    /// The size limit.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Makes every append so far durable.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.unsynced {
            let path = segment_path(&self.dir, self.active_first);
            self.active.sync_data().map_err(io_at(&path))?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn write_frame(&mut self, payload: &[u8]) -> Result<u64, SpoolError> {
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        let size = self
            .segments
            .get_mut(&self.active_first)
            .expect("the active segment is listed");
        let offset = *size;
        self.active
            .write_all(&frame)
            .map_err(|source| SpoolError::Io {
                path: segment_path(&self.dir, self.active_first),
                source,
            })?;
        *size += frame.len() as u64;
        self.unsynced = true;
        Ok(offset)
    }

    fn roll(&mut self, first: u64) -> Result<(), SpoolError> {
        if first == self.active_first {
            return Ok(());
        }
        self.sync()?;
        let path = segment_path(&self.dir, first);
        self.active = open_append(&path)?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_at(&self.dir))?;
        self.active_first = first;
        self.segments.insert(first, 0);
        Ok(())
    }

    fn delete_delivered_segments(&mut self) -> Result<(), SpoolError> {
        let oldest_pending = self
            .pending
            .values()
            .map(|l| l.segment)
            .min()
            .unwrap_or(self.active_first);
        let gone: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|&first| first < oldest_pending && first != self.active_first)
            .collect();
        for first in gone {
            // Marks written into this segment must be durable before older batches vanish.
            self.sync()?;
            let path = segment_path(&self.dir, first);
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            self.segments.remove(&first);
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_at(path))
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What is wrong with a frame that does not read.
#[derive(Debug)]
enum Damage {
    /// The frame runs to or past the end of the file: an append that did not finish.
    Torn(String),
    /// A complete frame with valid-looking bytes after it does not check out.
    Corrupt(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Torn(reason) | Self::Corrupt(reason) => f.write_str(reason),
        }
    }
}

/// The payload of the frame at the start of `bytes` and the frame's whole length.
fn parse_frame(bytes: &[u8]) -> Result<(&[u8], usize), Damage> {
    if bytes.len() < HEADER {
        return Err(Damage::Torn(format!(
            "{} bytes where a frame header needs 8",
            bytes.len()
        )));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_FRAME {
        // Zeroes or noise where a header should be: what a crash leaves in unwritten pages.
        return Err(Damage::Torn(format!("a frame length of {len}")));
    }
    let Some(payload) = bytes.get(HEADER..HEADER + len) else {
        return Err(Damage::Torn(format!(
            "a frame of {len} bytes with {} left",
            bytes.len() - HEADER
        )));
    };
    let damage = if bytes.len() == HEADER + len {
        Damage::Torn
    } else {
        Damage::Corrupt
    };
    if crc32fast::hash(payload) != crc {
        return Err(damage("a CRC mismatch".into()));
    }
    if !matches!(payload[0], KIND_BATCH | KIND_DELIVERED) || payload.len() < 9 {
        return Err(damage(format!("an unknown frame kind {}", payload[0])));
    }
    Ok((payload, HEADER + len))
}

fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("checked by parse_frame"))
}

fn encode_batch(seq: u64, topic: &str, records: &[Record]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| 8 + r.value.len() + r.key.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(1 + 8 + 2 + topic.len() + 4 + size);
    out.push(KIND_BATCH);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for record in records {
        match &record.key {
            Some(key) => {
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
            }
            None => out.extend_from_slice(&NO_KEY.to_le_bytes()),
        }
        out.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&record.value);
    }
    out
}

fn decode_batch(payload: &[u8]) -> Result<SpooledBatch, String> {
    let mut cursor = Cursor(payload);
    let short = || "a batch frame shorter than its contents".to_string();
    cursor.take(1).ok_or_else(short)?;
    let seq = u64::from_le_bytes(cursor.array().ok_or_else(short)?);
    let topic_len = u16::from_le_bytes(cursor.array().ok_or_else(short)?) as usize;
    let topic = String::from_utf8(cursor.take(topic_len).ok_or_else(short)?.to_vec())
        .map_err(|_| "a topic that is not UTF-8".to_string())?;
    let count = u32::from_le_bytes(cursor.array().ok_or_else(short)?) as usize;
    // A record takes at least 8 bytes (its two lengths): a count the rest cannot hold is damage,
    // found before anything is allocated for it.
    if count > cursor.0.len() / 8 {
        return Err(format!(
            "a batch of {count} records in {} bytes",
            cursor.0.len()
        ));
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = u32::from_le_bytes(cursor.array().ok_or_else(short)?);
        let key = match key_len {
            NO_KEY => None,
            len => Some(cursor.take(len as usize).ok_or_else(short)?.to_vec()),
        };
        let value_len = u32::from_le_bytes(cursor.array().ok_or_else(short)?) as usize;
        let value = cursor.take(value_len).ok_or_else(short)?.to_vec();
        records.push(Record { key, value });
    }
    Ok(SpooledBatch {
        seq,
        topic,
        records,
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|b| b.try_into().expect("N bytes"))
    }
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
