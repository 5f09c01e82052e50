//! What a table is stored as: a Delta table (the default), or plain Parquet, CSV or JSON Lines
//! objects under Hive-style `date=/hour=` paths, for engines that read files without a table
//! format (Athena through a Glue crawler, Redshift Spectrum, external tables).

use arrow::datatypes::{DataType, Schema};

use super::Problems;

/// How a table's rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableFormat {
    /// A Delta table: commits in its `_delta_log`.
    #[default]
    Delta,
    /// Plain objects, committed through a small log of sluice's own (`_sluice/log`).
    Files(FileFormat),
    /// An Apache Iceberg table, registered in a catalog.
    Iceberg,
}

/// The format of a plain-files table's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFormat {
    /// Parquet, CSV or JSON Lines.
    pub kind: FileKind,
    /// How each object is compressed.
    pub compression: FileCompression,
}

/// The encoding of a plain object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Apache Parquet.
    Parquet,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Compression of a plain object: inside the file for Parquet, of the whole object for text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCompression {
    /// None.
    None,
    /// Zstandard.
    Zstd,
    /// Snappy (Parquet only).
    Snappy,
    /// Gzip (text only).
    Gzip,
}

impl TableFormat {
    /// Its name, as `format` says it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Delta => "delta",
            Self::Iceberg => "iceberg",
            Self::Files(files) => files.kind.name(),
        }
    }
}

impl FileKind {
    /// Its name, as `format` says it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }
}

impl FileCompression {
    /// Its name, as `compression` says it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
            Self::Snappy => "snappy",
            Self::Gzip => "gzip",
        }
    }
}

impl FileFormat {
    /// The format `format` and `compression` name, as [`FileKind::name`] and
    /// [`FileCompression::name`] write them.
    pub fn from_names(format: &str, compression: &str) -> Option<Self> {
        let kind = [FileKind::Parquet, FileKind::Csv, FileKind::Jsonl]
            .into_iter()
            .find(|kind| kind.name() == format)?;
        let compression = [
            FileCompression::None,
            FileCompression::Zstd,
            FileCompression::Snappy,
            FileCompression::Gzip,
        ]
        .into_iter()
        .find(|known| known.name() == compression)?;
        Some(Self { kind, compression })
    }

    /// The ending of its object names, such as `.csv.gz`.
    pub fn extension(&self) -> String {
        let compressed = match (self.kind, self.compression) {
            (FileKind::Parquet, _) | (_, FileCompression::None) => "",
            (_, FileCompression::Gzip) => ".gz",
            (_, FileCompression::Zstd) => ".zst",
            (_, FileCompression::Snappy) => unreachable!("refused for text by parse_table_format"),
        };
        format!(".{}{compressed}", self.kind.name())
    }
}

/// The `format` and `compression` of a table at `at`, checked against its columns: CSV holds
/// no nested values.
pub(crate) fn parse_table_format(
    at: &str,
    format: Option<&str>,
    compression: Option<&str>,
    columns: Option<&Schema>,
    problems: &mut Problems,
) -> TableFormat {
    let kind = match format.unwrap_or("delta") {
        table @ ("delta" | "iceberg") => {
            if compression.is_some() {
                problems.add(
                    format!("{at}.compression"),
                    format!(
                        "a{} {table} table's files are always zstd Parquet; compression is for \
                         format = \"parquet\", \"csv\" or \"jsonl\"",
                        if table == "iceberg" { "n" } else { "" }
                    ),
                );
            }
            return match table {
                "iceberg" => TableFormat::Iceberg,
                _ => TableFormat::Delta,
            };
        }
        "parquet" => FileKind::Parquet,
        "csv" => FileKind::Csv,
        "jsonl" => FileKind::Jsonl,
        other => {
            problems.add(
                format!("{at}.format"),
                format!(
                    "expected \"delta\", \"iceberg\", \"parquet\", \"csv\" or \"jsonl\", \
                     got {other:?}"
                ),
            );
            return TableFormat::Delta;
        }
    };
    let allowed: &[(&str, FileCompression)] = match kind {
        FileKind::Parquet => &[
            ("zstd", FileCompression::Zstd),
            ("snappy", FileCompression::Snappy),
            ("none", FileCompression::None),
        ],
        FileKind::Csv | FileKind::Jsonl => &[
            ("gzip", FileCompression::Gzip),
            ("zstd", FileCompression::Zstd),
            ("none", FileCompression::None),
        ],
    };
    let compression = match compression {
        None if kind == FileKind::Parquet => FileCompression::Zstd,
        None => FileCompression::None,
        Some(name) => match allowed.iter().find(|(allowed, _)| *allowed == name) {
            Some((_, compression)) => *compression,
            None => {
                let names: Vec<String> = allowed.iter().map(|(n, _)| format!("{n:?}")).collect();
                problems.add(
                    format!("{at}.compression"),
                    format!(
                        "expected one of {} for {}, got {name:?}",
                        names.join(", "),
                        kind.name()
                    ),
                );
                FileCompression::None
            }
        },
    };
    if kind == FileKind::Csv
        && let Some(columns) = columns
    {
        for field in columns.fields() {
            if field.data_type().is_nested() || matches!(field.data_type(), DataType::Binary) {
                problems.add(
                    format!("{at}.format"),
                    format!(
                        "column {} is {}, which CSV cannot hold; use \"parquet\" or \"jsonl\"",
                        field.name(),
                        field.data_type()
                    ),
                );
            }
        }
    }
    TableFormat::Files(FileFormat { kind, compression })
}

#[cfg(test)]
mod tests;
