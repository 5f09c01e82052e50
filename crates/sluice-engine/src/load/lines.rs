//! The input of `sluice load`: its files as one sequence of lines, read in 1 MiB chunks on a
//! thread of their own and decoded ahead, batches side by side, so that reading and JSON
//! decoding (about half of a load's CPU) use both cores beside the tables, windows and alerts
//! of the batch before.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use sluice_core::{DecodedBatch, Decoder, RawRecord};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches read or decoded ahead of the one being landed, and decoded at the same time: two
/// keep both cores of a small machine busy, few enough that memory does not grow with the
/// input.
const DECODED_AHEAD: usize = 2;

/// One batch of lines as read.
pub(super) struct ReadBatch {
    /// The lines; [`Ahead::recycle`] hands the buffer back once the batch is landed.
    pub lines: LineBatch,
    /// The offset of the first line.
    pub first: i64,
    /// Lines at the start that an earlier load landed already: not decoded.
    pub skip: usize,
}

/// One batch of lines, decoded.
pub(super) struct Decoded {
    /// The lines.
    pub read: ReadBatch,
    /// The lines after `skip`; `None` when every line was skipped.
    pub rows: Option<DecodedBatch>,
}

/// The lines of the input, read on a thread of their own and decoded ahead.
pub(super) struct Ahead {
    decoded: Pin<Box<dyn Stream<Item = Result<Decoded>> + Send>>,
    recycled: std::sync::mpsc::Sender<LineBatch>,
    reader: JoinHandle<Result<()>>,
}

impl Ahead {
    /// Starts reading `lines` into batches of `batch_size` and decoding those from `start` on
    /// with `decoder`, as records of `source`.
    pub fn start(
        mut lines: Lines,
        decoder: Decoder,
        source: String,
        start: i64,
        batch_size: usize,
    ) -> Self {
        let (sender, read) = mpsc::channel(DECODED_AHEAD);
        let (recycled, buffers) = std::sync::mpsc::channel::<LineBatch>();
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            loop {
                let mut batch = buffers.try_recv().unwrap_or_default();
                let first = lines.fill(&mut batch, batch_size)?;
                if batch.lines.is_empty() {
                    return Ok(());
                }
                let skip = usize::try_from((start - first).max(0))
                    .unwrap_or(usize::MAX)
                    .min(batch.lines.len());
                let read = ReadBatch {
                    lines: batch,
                    first,
                    skip,
                };
                if sender.blocking_send(read).is_err() {
                    // The load stopped (on an error of its own, which it reports).
                    return Ok(());
                }
            }
        });
        let decoded = futures::stream::unfold(read, |mut read| async move {
            read.recv().await.map(|batch| (batch, read))
        })
        .map(move |read| {
            let (decoder, source) = (decoder.clone(), source.clone());
            // On the runtime's workers rather than more threads of their own: a batch takes
            // milliseconds, and every thread that allocates gets its own glibc arena: threads
            // of their own (`spawn_blocking`) kept 15–30 MiB more resident (BENCHMARKS.md).
            tokio::spawn(async move { decode(read, &decoder, &source) })
        })
        .map(|decoding| async {
            decoding
                .await
                .context("decoding a batch of lines failed to run")
        })
        .buffered(DECODED_AHEAD)
        .boxed();
        Self {
            decoded,
            recycled,
            reader,
        }
    }

    /// The next batch, or `None` at the end of the input; fails with the reader's error
    /// (a file that cannot be read) rather than end early.
    pub async fn next(&mut self) -> Result<Option<Decoded>> {
        if let Some(decoded) = self.decoded.next().await {
            return decoded.map(Some);
        }
        (&mut self.reader)
            .await
            .context("the reader of the input files stopped")??;
        Ok(None)
    }

    /// Hands a landed batch's buffer back to the reader.
    pub fn recycle(&self, lines: LineBatch) {
        // The reader may have finished; the buffer is then just dropped.
        let _ = self.recycled.send(lines);
    }
}

/// Decodes the lines of `read` after its skipped ones.
fn decode(read: ReadBatch, decoder: &Decoder, source: &str) -> Decoded {
    let ReadBatch { lines, first, skip } = &read;
    let (first, skip) = (*first, *skip);
    let rows = (skip < lines.lines.len()).then(|| {
        let records: Vec<RawRecord<'_>> = lines.lines()[skip..]
            .iter()
            .enumerate()
            .map(|(i, line)| RawRecord {
                payload: Some(line),
                partition: 0,
                offset: first + (skip + i) as i64,
            })
            .collect();
        let ingested_at_us = chrono::Utc::now().timestamp_micros();
        decoder.decode(source, &records, ingested_at_us)
    });
    Decoded { read, rows }
}

/// Bytes read from a file at a time.
const READ_CHUNK: u64 = 1 << 20;

/// Lines read together: one buffer and each line's place in it (line ends left out, and a
/// file's last line may lack one), so no line is copied on its own.
#[derive(Default)]
pub(super) struct LineBatch {
    text: Vec<u8>,
    lines: Vec<Range<usize>>,
}

impl LineBatch {
    pub fn lines(&self) -> Vec<&[u8]> {
        self.lines.iter().map(|r| &self.text[r.clone()]).collect()
    }

    /// Adds the line at `range` of the text, less a trailing `\r`.
    fn push(&mut self, range: Range<usize>) {
        let end = match self.text[range.clone()].last() {
            Some(b'\r') => range.end - 1,
            _ => range.end,
        };
        self.lines.push(range.start..end);
    }
}

/// The input files as one sequence of lines.
pub(super) struct Lines {
    files: std::vec::IntoIter<PathBuf>,
    /// The file being read, its path and how many lines were read from it.
    current: Option<(PathBuf, File, u64)>,
    /// The start of a line whose end is not read yet.
    carry: Vec<u8>,
    next_offset: i64,
    /// Bytes read at a time ([`READ_CHUNK`]; small in tests, so that lines span reads).
    chunk: u64,
}

impl Lines {
    pub fn open(files: Vec<PathBuf>) -> Result<Self> {
        for file in &files {
            File::open(file).with_context(|| format!("opening {}", file.display()))?;
        }
        Ok(Self {
            files: files.into_iter(),
            current: None,
            carry: Vec::new(),
            next_offset: 0,
            chunk: READ_CHUNK,
        })
    }

    /// Refills `batch` with the next lines, at least `max` unless the input ends first (a
    /// whole chunk read is split, so a few more); returns the offset of the first.
    fn fill(&mut self, batch: &mut LineBatch, max: usize) -> Result<i64> {
        let first = self.next_offset;
        batch.lines.clear();
        batch.text.clear();
        std::mem::swap(&mut batch.text, &mut self.carry);
        // Where the line being read starts: the text before it is split into lines.
        let mut start = 0;
        while batch.lines.len() < max {
            let Some((path, file, line_number)) = &mut self.current else {
                let Some(path) = self.files.next() else {
                    break;
                };
                let file =
                    File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                self.current = Some((path, file, 0));
                continue;
            };
            let scanned = batch.text.len();
            let read = (&*file)
                .take(self.chunk)
                .read_to_end(&mut batch.text)
                .with_context(|| format!("reading {} after line {line_number}", path.display()))?;
            if read == 0 {
                if start < batch.text.len() {
                    *line_number += 1;
                    batch.push(start..batch.text.len());
                    start = batch.text.len();
                }
                self.current = None;
                continue;
            }
            let ends: Vec<usize> = memchr::memchr_iter(b'\n', &batch.text[scanned..])
                .map(|at| scanned + at)
                .collect();
            *line_number += ends.len() as u64;
            for end in ends {
                batch.push(start..end);
                start = end + 1;
            }
        }
        self.carry.extend_from_slice(&batch.text[start..]);
        batch.text.truncate(start);
        self.next_offset += batch.lines.len() as i64;
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use sluice_core::schema::{FieldType, SchemaField, StreamSchema};

    use super::{Ahead, Decoder, LineBatch, Lines};

    /// Every line of `files` as `fill` hands them out, with the first offset of each batch.
    fn read_all(files: &[&[u8]], chunk: u64, max: usize) -> (Vec<String>, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = files
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let path = dir.path().join(format!("{i}.ndjson"));
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect();
        let mut lines = Lines::open(paths).unwrap();
        lines.chunk = chunk;
        let mut batch = LineBatch::default();
        let (mut all, mut firsts) = (Vec::new(), Vec::new());
        loop {
            let first = lines.fill(&mut batch, max).unwrap();
            if batch.lines.is_empty() {
                return (all, firsts);
            }
            assert_eq!(first, all.len() as i64, "offsets continue across batches");
            firsts.push(first);
            all.extend(
                batch
                    .lines()
                    .iter()
                    .map(|l| String::from_utf8(l.to_vec()).unwrap()),
            );
        }
    }

    #[test]
    fn lines_span_reads_and_files_with_crlf_blank_and_unterminated_lines() {
        let files: [&[u8]; 3] = [b"{\"a\":1}\r\n\n{\"b\":22}\n{\"c\":333}", b"", b"x\ny\r\n"];
        let expected = ["{\"a\":1}", "", "{\"b\":22}", "{\"c\":333}", "x", "y"];
        for chunk in [1, 3, 7, 1 << 20] {
            for max in [1, 2, 100] {
                let (all, firsts) = read_all(&files, chunk, max);
                assert_eq!(all, expected, "chunk {chunk}, max {max}");
                assert!(
                    firsts.len() > 1 || max >= 6,
                    "chunk {chunk}, max {max}: {firsts:?}"
                );
            }
        }
    }

    fn decoder() -> Decoder {
        let field = |name: &str, ty| SchemaField {
            name: name.into(),
            ty,
            required: true,
        };
        let fields = vec![
            field("n", FieldType::Int64),
            field("ts", FieldType::Timestamp),
        ];
        Decoder::new(Arc::new(StreamSchema::new(fields, "ts").unwrap()), 65536)
    }

    /// Writes `texts` as files in `dir`; returns their paths.
    fn files(dir: &std::path::Path, texts: &[String]) -> Vec<std::path::PathBuf> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let path = dir.join(format!("{i}.ndjson"));
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect()
    }

    fn event(n: usize) -> String {
        format!("{{\"n\":{n},\"ts\":\"2026-11-22T00:00:00Z\"}}\n")
    }

    /// In every other 50 lines, every third is not JSON and the others carry 16 KiB of
    /// padding: those batches take far longer to decode than the small ones after them.
    fn slow_and_fast_batches(n: usize) -> String {
        match (n / 50 % 2, n % 3) {
            (0, 0) => format!("not json {n}\n"),
            (0, _) => event(n).replacen('{', &format!("{{\"pad\":\"{}\",", "x".repeat(16384)), 1),
            _ => event(n),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_decoded_side_by_side_come_back_in_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let texts = [
            (0..250).map(slow_and_fast_batches).collect::<String>(),
            (250..1000).map(slow_and_fast_batches).collect::<String>(),
        ];
        let lines = Lines::open(files(dir.path(), &texts)).unwrap();
        // Lines before 100 were landed by an earlier load: skipped, not decoded.
        let mut ahead = Ahead::start(lines, decoder(), "file:test".into(), 100, 50);
        let (mut next_line, mut values, mut rejected) = (0, Vec::new(), Vec::new());
        while let Some(decoded) = ahead.next().await.unwrap() {
            assert_eq!(decoded.read.first, next_line, "batches in input order");
            let count = decoded.read.lines.lines.len() as i64;
            assert_eq!(decoded.read.skip as i64, (100 - next_line).clamp(0, count));
            next_line += count;
            if let Some(rows) = &decoded.rows {
                rejected.extend(rows.rejected.iter().map(|r| r.offset));
                let column = rows.batch.column_by_name("n").unwrap();
                values.extend(column.as_primitive::<Int64Type>().values().iter().copied());
                let offsets = rows.batch.column_by_name("_offset").unwrap();
                let first = offsets.as_primitive::<Int64Type>().value(0);
                assert_eq!(first, decoded.read.first + decoded.read.skip as i64);
            }
            ahead.recycle(decoded.read.lines);
        }
        assert_eq!(next_line, 1000);
        let bad = |n: &i64| n / 50 % 2 == 0 && n % 3 == 0;
        assert_eq!(values, (100..1000).filter(|n| !bad(n)).collect::<Vec<_>>());
        assert_eq!(rejected, (100..1000).filter(bad).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_that_cannot_be_read_fails_the_load_rather_than_ending_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = files(dir.path(), &[(0..20).map(event).collect::<String>()]);
        // A directory opens like a file on Linux, and fails on its first read.
        let unreadable = dir.path().join("not-a-file.ndjson");
        std::fs::create_dir(&unreadable).unwrap();
        paths.push(unreadable);
        let mut ahead = Ahead::start(
            Lines::open(paths).unwrap(),
            decoder(),
            "file:t".into(),
            0,
            5,
        );
        let error = loop {
            match ahead.next().await {
                Ok(Some(decoded)) => ahead.recycle(decoded.read.lines),
                Ok(None) => panic!("the input ended without the read error"),
                Err(error) => break format!("{error:#}"),
            }
        };
        assert!(
            error.contains("not-a-file.ndjson") && error.contains("after line 0"),
            "{error}"
        );
    }
}
