//! A request body into record texts: its content type and encoding checked, decompressed within
//! a limit (a gzip or zstd bomb stops at the limit, it is never inflated whole), and split into
//! records — a JSON object is one record, a JSON array one per element, NDJSON one per line.

use std::io::Read;

use bytes::Bytes;
use serde::Deserializer as _;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sluice_core::config::GatewayLimits;

/// How records are laid out in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `application/json`: one object, or an array of them.
    Json,
    /// `application/x-ndjson` and friends: one JSON text per line.
    Ndjson,
}

/// Why a body was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The content type is missing or not JSON/NDJSON (415).
    #[error(
        "unsupported Content-Type {0:?}: send application/json (an object or an array) or \
         application/x-ndjson (one object per line), UTF-8"
    )]
    ContentType(String),
    /// The content encoding is not identity, gzip or zstd (415).
    #[error("unsupported Content-Encoding {0:?}: send identity, gzip or zstd")]
    Encoding(String),
    /// The body as sent is larger than allowed (413).
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body inflates beyond the limit (413).
    #[error("the body decompresses to more than {limit} bytes")]
    DecompressedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The compressed body is damaged (400).
    #[error("the {encoding} body cannot be decompressed: {reason}")]
    Undecodable {
        /// The encoding.
        encoding: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// More records than allowed (413).
    #[error("{count} records, more than the {limit} one request may carry")]
    TooManyRecords {
        /// Records in the body.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Nothing to ingest (400).
    #[error("the body holds no records")]
    Empty,
    /// A JSON body that is not an object or an array of values (400).
    #[error("the body is not a JSON object or array: {0}")]
    NotJson(String),
}

impl BodyError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::ContentType(_) | Self::Encoding(_) => 415,
            Self::TooLarge { .. }
            | Self::DecompressedTooLarge { .. }
            | Self::TooManyRecords { .. } => 413,
            Self::Undecodable { .. } | Self::Empty | Self::NotJson(_) => 400,
        }
    }
}

/// The layout a `Content-Type` header asks for.
pub fn layout(content_type: Option<&str>) -> Result<Layout, BodyError> {
    let text = content_type.unwrap_or("").trim();
    let mut parts = text.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err(BodyError::ContentType(text.to_string()));
        }
    }
    match mime.as_str() {
        "application/json" => Ok(Layout::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Layout::Ndjson),
        _ => Err(BodyError::ContentType(text.to_string())),
    }
}

/// The body decompressed according to `Content-Encoding`, at most `limit` bytes.
pub fn decompress(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    let encoding = encoding.unwrap_or("identity").trim().to_ascii_lowercase();
    let (name, reader): (&'static str, Box<dyn Read + '_>) = match encoding.as_str() {
        "" | "identity" => {
            return if body.len() > limit {
                Err(BodyError::DecompressedTooLarge { limit })
            } else {
                Ok(body)
            };
        }
        "gzip" | "x-gzip" => (
            "gzip",
            Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        ),
        "zstd" => (
            "zstd",
            Box::new(
                zstd::Decoder::new(&body[..]).map_err(|err| BodyError::Undecodable {
                    encoding: "zstd",
                    reason: err.to_string(),
                })?,
            ),
        ),
        _ => return Err(BodyError::Encoding(encoding)),
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    // One byte past the limit tells "too large" from "exactly the limit".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|err| BodyError::Undecodable {
            encoding: name,
            reason: err.to_string(),
        })?;
    if out.len() > limit {
        return Err(BodyError::DecompressedTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// The record texts of a decompressed body, each a slice of it. At most `max_records` are kept:
/// records beyond are only counted, so a body of many tiny records costs no more memory than
/// one within the limit.
pub fn split(
    layout: Layout,
    body: &Bytes,
    limits: &GatewayLimits,
) -> Result<Vec<Bytes>, BodyError> {
    let limit = limits.max_records;
    let records = match layout {
        Layout::Ndjson => {
            let mut lines = body
                .split(|&b| b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .filter(|line| !line.trim_ascii().is_empty());
            let kept: Vec<Bytes> = lines
                .by_ref()
                .take(limit)
                .map(|line| body.slice_ref(line))
                .collect();
            match lines.count() {
                0 => kept,
                more => return Err(too_many(kept.len() + more, limit)),
            }
        }
        Layout::Json => split_json(body, limit)?,
    };
    if records.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(records)
}

fn too_many(count: usize, limit: usize) -> BodyError {
    BodyError::TooManyRecords { count, limit }
}

fn split_json(body: &Bytes, limit: usize) -> Result<Vec<Bytes>, BodyError> {
    let text = body.trim_ascii();
    match text.first() {
        None => Err(BodyError::Empty),
        Some(b'[') => {
            let not_json = |err: serde_json::Error| BodyError::NotJson(err.to_string());
            let mut parser = serde_json::Deserializer::from_slice(text);
            let elements = parser
                .deserialize_seq(ArrayElements { limit })
                .map_err(not_json)?;
            parser.end().map_err(not_json)?;
            match elements {
                Elements::Kept(kept) => Ok(kept
                    .into_iter()
                    .map(|raw| body.slice_ref(raw.get().as_bytes()))
                    .collect()),
                Elements::TooMany(count) => Err(too_many(count, limit)),
            }
        }
        // One record: the validator reports what is wrong with it, per record.
        Some(_) => Ok(vec![body.slice_ref(text)]),
    }
}

/// Reads a JSON array keeping at most `limit` elements (as raw text) and counting the rest.
struct ArrayElements {
    limit: usize,
}

enum Elements<'de> {
    Kept(Vec<&'de RawValue>),
    TooMany(usize),
}

impl<'de> Visitor<'de> for ArrayElements {
    type Value = Elements<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        while kept.len() < self.limit {
            match seq.next_element::<&'de RawValue>()? {
                Some(element) => kept.push(element),
                None => return Ok(Elements::Kept(kept)),
            }
        }
        let mut count = kept.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(if count > self.limit {
            Elements::TooMany(count)
        } else {
            Elements::Kept(kept)
        })
    }
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn limits() -> GatewayLimits {
        GatewayLimits {
            max_body: 1 << 20,
            max_decompressed_body: 1 << 16,
            max_records: 3,
            max_depth: 8,
            rate_per_key: None,
            max_concurrent: 1,
            header_timeout: std::time::Duration::from_secs(1),
            body_timeout: std::time::Duration::from_secs(1),
        }
    }

    fn texts(records: &[Bytes]) -> Vec<&str> {
        records
            .iter()
            .map(|r| std::str::from_utf8(r).unwrap())
            .collect()
    }

    #[test]
    fn content_types_choose_the_layout_and_others_are_415() {
        assert_eq!(layout(Some("application/json")), Ok(Layout::Json));
        assert_eq!(
            layout(Some("application/json; charset=UTF-8")),
            Ok(Layout::Json)
        );
        assert_eq!(layout(Some("application/x-ndjson")), Ok(Layout::Ndjson));
        for refused in [
            None,
            Some("text/plain"),
            Some("application/json; charset=latin1"),
        ] {
            assert_eq!(layout(refused).unwrap_err().status(), 415, "{refused:?}");
        }
    }

    #[test]
    fn objects_arrays_and_lines_split_into_records() {
        let body = Bytes::from_static(b" [ {\"a\": 1}, {\"a\": [2, 3]} ] ");
        assert_eq!(
            texts(&split(Layout::Json, &body, &limits()).unwrap()),
            ["{\"a\": 1}", "{\"a\": [2, 3]}"]
        );
        let body = Bytes::from_static(b"{\"a\":1}\r\n\n{\"a\":2}\nnot json\n");
        assert_eq!(
            texts(&split(Layout::Ndjson, &body, &limits()).unwrap()),
            ["{\"a\":1}", "{\"a\":2}", "not json"]
        );
        let body = Bytes::from_static(b"{\"a\":1}");
        assert_eq!(
            texts(&split(Layout::Json, &body, &limits()).unwrap()),
            ["{\"a\":1}"]
        );
    }

    #[test]
    fn empty_bodies_broken_arrays_and_too_many_records_are_refused_whole() {
        let cases: [(Layout, &[u8], u16); 4] = [
            (Layout::Json, b"  ", 400),
            (Layout::Ndjson, b"\n\n", 400),
            (Layout::Json, b"[{\"a\":1},", 400),
            (Layout::Ndjson, b"{}\n{}\n{}\n{}\n", 413),
        ];
        for (layout, body, status) in cases {
            let err = split(layout, &Bytes::copy_from_slice(body), &limits()).unwrap_err();
            assert_eq!(err.status(), status, "{err}");
        }
    }

    #[test]
    fn gzip_and_zstd_inflate_and_a_bomb_stops_at_the_limit() {
        let text = b"{\"a\":1}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert_eq!(decompress(Some("gzip"), gz, 1 << 16).unwrap(), &text[..]);
        let zst = Bytes::from(zstd::encode_all(&text[..], 3).unwrap());
        assert_eq!(decompress(Some("zstd"), zst, 1 << 16).unwrap(), &text[..]);

        // 64 MiB of zeroes compress to about 64 KiB; inflating stops one byte past the limit.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeroes = vec![0u8; 1 << 20];
        for _ in 0..64 {
            bomb.write_all(&zeroes).unwrap();
        }
        let bomb = Bytes::from(bomb.finish().unwrap());
        assert!(bomb.len() < 1 << 18, "{} bytes", bomb.len());
        let err = decompress(Some("gzip"), bomb, 1 << 16).unwrap_err();
        assert_eq!(err, BodyError::DecompressedTooLarge { limit: 1 << 16 });

        assert_eq!(
            decompress(Some("br"), Bytes::new(), 10)
                .unwrap_err()
                .status(),
            415
        );
        let err = decompress(Some("gzip"), Bytes::from_static(b"not gzip"), 10).unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }
}
