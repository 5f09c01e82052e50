//! Rows encoded into the bytes of plain objects, one per date/hour partition of a commit:
//! Parquet (compressed inside), or CSV or JSON Lines (the whole object compressed). The
//! partition columns are left out of the objects: their values are in the path, as Hive-style
//! readers expect (Athena, DataFusion's listing tables).

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use sluice_core::config::{FileCompression, FileFormat, FileKind};

use crate::evolution::conform;
use crate::writer::writer_properties;

/// One object being encoded.
pub(crate) struct ObjectEncoder {
    writer: Writer,
    /// Its columns.
    schema: SchemaRef,
    rows: usize,
}

enum Writer {
    Parquet(ArrowWriter<Vec<u8>>),
    Csv(arrow::csv::Writer<Compressor>),
    Jsonl(arrow::json::LineDelimitedWriter<Compressor>),
}

/// The bytes of text objects, compressed as they are written.
enum Compressor {
    None(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::Encoder<'static, Vec<u8>>),
}

impl ObjectEncoder {
    /// An object of `format` holding rows with `schema` (without the partition columns).
    pub(crate) fn new(format: FileFormat, schema: &SchemaRef) -> Result<Self, ArrowError> {
        let writer = match format.kind {
            FileKind::Parquet => Writer::Parquet(ArrowWriter::try_new(
                Vec::new(),
                schema.clone(),
                Some(parquet_properties(schema, format.compression)),
            )?),
            FileKind::Csv => Writer::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(Compressor::new(format.compression)?),
            ),
            FileKind::Jsonl => Writer::Jsonl(arrow::json::LineDelimitedWriter::new(
                Compressor::new(format.compression)?,
            )),
        };
        Ok(Self {
            writer,
            schema: schema.clone(),
            rows: 0,
        })
    }

    /// The columns of the object.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds rows, by column name: a column they lack (they were written before it was added)
    /// is null.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let batch = &conform(batch, &self.schema)?;
        match &mut self.writer {
            Writer::Parquet(writer) => writer.write(batch).map_err(parquet_error)?,
            Writer::Csv(writer) => writer.write(batch)?,
            Writer::Jsonl(writer) => writer.write(batch)?,
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The whole object.
    pub(crate) fn finish(self) -> Result<Vec<u8>, ArrowError> {
        match self.writer {
            Writer::Parquet(writer) => writer.into_inner().map_err(parquet_error),
            Writer::Csv(writer) => writer.into_inner().finish(),
            Writer::Jsonl(mut writer) => {
                writer.finish()?;
                writer.into_inner().finish()
            }
        }
    }
}

/// The Delta tables' Parquet settings with the table's compression.
fn parquet_properties(schema: &SchemaRef, compression: FileCompression) -> WriterProperties {
    let properties = writer_properties(schema).into_builder();
    match compression {
        FileCompression::Zstd => properties,
        FileCompression::Snappy => properties.set_compression(Compression::SNAPPY),
        FileCompression::None | FileCompression::Gzip => {
            properties.set_compression(Compression::UNCOMPRESSED)
        }
    }
    .build()
}

fn parquet_error(err: deltalake::parquet::errors::ParquetError) -> ArrowError {
    ArrowError::ExternalError(Box::new(err))
}

impl Compressor {
    fn new(compression: FileCompression) -> Result<Self, ArrowError> {
        Ok(match compression {
            FileCompression::None | FileCompression::Snappy => Self::None(Vec::new()),
            FileCompression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            FileCompression::Zstd => Self::Zstd(zstd::Encoder::new(Vec::new(), 3)?),
        })
    }

    fn finish(self) -> Result<Vec<u8>, ArrowError> {
        Ok(match self {
            Self::None(bytes) => bytes,
            Self::Gzip(encoder) => encoder.finish()?,
            Self::Zstd(encoder) => encoder.finish()?,
        })
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::None(bytes) => bytes.write(buf),
            Self::Gzip(encoder) => encoder.write(buf),
            Self::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::None(bytes) => bytes.flush(),
            Self::Gzip(encoder) => encoder.flush(),
            Self::Zstd(encoder) => encoder.flush(),
        }
    }
}
