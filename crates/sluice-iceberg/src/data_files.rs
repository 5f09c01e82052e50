//! A commit's rows as Iceberg data files: split by the table's partition transforms of the
//! event time (`day(ts)`, `hour(ts)`), each partition written as one zstd Parquet file by
//! sluice's own arrow writer (field ids in its schema), uploaded under a unique name, and
//! described as an Iceberg `DataFile` (partition tuple, counts, sizes, bounds).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::file::metadata::ParquetMetaData;
use deltalake::parquet::file::statistics::Statistics;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, PartitionSpec,
    Struct, Transform,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice_lake::evolution::conform;

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// How a table's rows are partitioned: transforms of the event-time column.
#[derive(Debug, Clone)]
pub struct Partitioning {
    /// The event-time column's name.
    column: String,
    /// The transforms, in the spec's order, with their partition field names.
    fields: Vec<(Transform, String)>,
    /// The table's partition spec id.
    spec_id: i32,
}

impl Partitioning {
    /// The partitioning of `spec`, whose fields must all be day or hour transforms of the
    /// column `column`.
    pub fn new(spec: &PartitionSpec, column: &str) -> Result<Self, String> {
        let fields = spec
            .fields()
            .iter()
            .map(|field| match field.transform {
                Transform::Day | Transform::Hour => Ok((field.transform, field.name.clone())),
                other => Err(format!(
                    "partition field {} is {other}; sluice writes only day and hour partitions",
                    field.name
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            column: column.to_string(),
            fields,
            spec_id: spec.spec_id(),
        })
    }

    /// The partition tuple of an event time (UTC microseconds), as a sortable key: each
    /// transform's value, days or hours since the epoch, floored.
    fn key(&self, micros: i64) -> Vec<i32> {
        self.fields
            .iter()
            .map(|(transform, _)| {
                let unit = match transform {
                    Transform::Hour => MICROS_PER_HOUR,
                    _ => MICROS_PER_DAY,
                };
                i32::try_from(micros.div_euclid(unit)).unwrap_or(i32::MAX)
            })
            .collect()
    }

    /// The partition tuple Iceberg stores: a date for `day`, an int for `hour`.
    fn tuple(&self, key: &[i32]) -> Struct {
        self.fields
            .iter()
            .zip(key)
            .map(|((transform, _), value)| {
                Some(match transform {
                    Transform::Day => Literal::date(*value),
                    _ => Literal::int(*value),
                })
            })
            .collect()
    }

    /// The directory of a partition under the table's data path, Hive style.
    fn directory(&self, key: &[i32]) -> String {
        self.fields
            .iter()
            .zip(key)
            .map(|((transform, name), value)| {
                let (unit, shown) = match transform {
                    Transform::Day => (chrono::TimeDelta::days(1), "%Y-%m-%d"),
                    _ => (chrono::TimeDelta::hours(1), "%Y-%m-%d-%H"),
                };
                let start = chrono::DateTime::UNIX_EPOCH + unit * *value;
                format!("{name}={}", start.format(shown))
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The rows of `batches` by partition key, in key order.
    pub fn split(
        &self,
        batches: &[RecordBatch],
    ) -> Result<BTreeMap<Vec<i32>, Vec<RecordBatch>>, String> {
        let mut parts: BTreeMap<Vec<i32>, Vec<RecordBatch>> = BTreeMap::new();
        let batches = batches.iter().filter(|b| b.num_rows() > 0);
        if self.fields.is_empty() {
            let rows: Vec<RecordBatch> = batches.cloned().collect();
            if !rows.is_empty() {
                parts.insert(Vec::new(), rows);
            }
            return Ok(parts);
        }
        for batch in batches {
            let times = (batch.column_by_name(&self.column))
                .ok_or_else(|| format!("the rows have no event-time column {}", self.column))?;
            let DataType::Timestamp(TimeUnit::Microsecond, _) = times.data_type() else {
                return Err(format!(
                    "the event-time column is {}, expected microsecond timestamps",
                    times.data_type()
                ));
            };
            if times.null_count() > 0 {
                return Err("a row has no event time".to_string());
            }
            // Rows by the hour of their event time (no allocation per row); every transform
            // sluice writes is a function of the hour.
            let mut by_hour: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            let values = times.as_primitive::<TimestampMicrosecondType>().values();
            for (row, micros) in values.iter().enumerate() {
                by_hour
                    .entry(micros.div_euclid(MICROS_PER_HOUR))
                    .or_default()
                    .push(u32::try_from(row).expect("a batch below 4G rows"));
            }
            for (hour, indices) in by_hour {
                let key = self.key(hour * MICROS_PER_HOUR);
                let part = if indices.len() == batch.num_rows() {
                    batch.clone()
                } else {
                    take_record_batch(batch, &UInt32Array::from(indices))
                        .map_err(|e| e.to_string())?
                };
                parts.entry(key).or_default().push(part);
            }
        }
        Ok(parts)
    }
}

/// Where and how data files are written.
pub struct DataFileWriter {
    /// The table's root store and the data directory's path in it.
    pub store: Arc<dyn ObjectStore>,
    /// The data directory's path in `store`.
    pub data_path: Path,
    /// Its absolute location (`s3://…/data`), as manifests name files.
    pub data_location: String,
    /// The rows' schema, with Iceberg field ids.
    pub schema: SchemaRef,
}

impl DataFileWriter {
    /// Writes one partition's rows as one Parquet file and describes it. Rows without some of
    /// the columns (written before a newer writer added them) hold null there.
    pub async fn write(
        &self,
        partitioning: &Partitioning,
        key: &[i32],
        batches: &[RecordBatch],
    ) -> Result<DataFile, String> {
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(
            &mut bytes,
            self.schema.clone(),
            Some(sluice_lake::writer::writer_properties(&self.schema)),
        )
        .map_err(|e| e.to_string())?;
        for batch in batches {
            // Nested fields carry their ids in the schema alone: their types are compared
            // without names and metadata.
            let relabel = RecordBatchOptions::new().with_match_field_names(false);
            let same_columns = (batch.schema_ref().fields().iter().map(|f| f.name())).eq(self
                .schema
                .fields()
                .iter()
                .map(|f| f.name()));
            let rows = match same_columns {
                true => Ok(batch.clone()),
                false => conform(batch, &self.schema),
            };
            let batch = rows
                .and_then(|rows| {
                    RecordBatch::try_new_with_options(
                        self.schema.clone(),
                        rows.columns().to_vec(),
                        &relabel,
                    )
                })
                .map_err(|e| format!("the rows do not match the table's columns: {e}"))?;
            writer.write(&batch).map_err(|e| e.to_string())?;
        }
        let metadata = writer.close().map_err(|e| e.to_string())?;
        let name = format!(
            "{}/{}.parquet",
            partitioning.directory(key),
            uuid::Uuid::now_v7()
        );
        let size = bytes.len() as u64;
        self.store
            .put(
                &Path::from(format!("{}/{name}", self.data_path)),
                PutPayload::from(bytes),
            )
            .await
            .map_err(|e| format!("writing data file {name}: {e}"))?;
        describe(
            format!("{}/{name}", self.data_location),
            size,
            &metadata,
            partitioning.tuple(key),
            partitioning.spec_id,
        )
    }
}

/// The `DataFile` of a Parquet file from its footer: counts, sizes and null counts per field
/// id, and bounds where the statistics are exact and of a numeric or temporal column.
fn describe(
    location: String,
    size: u64,
    metadata: &ParquetMetaData,
    partition: Struct,
    spec_id: i32,
) -> Result<DataFile, String> {
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    let mut split_offsets = Vec::new();
    for group in metadata.row_groups() {
        if let Some(first) = group.columns().first() {
            split_offsets.push(
                first
                    .data_page_offset()
                    .min(first.dictionary_page_offset().unwrap_or(i64::MAX)),
            );
        }
        for column in group.columns() {
            let info = column.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let id = info.id();
            *sizes.entry(id).or_default() += column.compressed_size().max(0) as u64;
            *values.entry(id).or_default() += column.num_values().max(0) as u64;
            let Some(stats) = column.statistics() else {
                continue;
            };
            if let Some(count) = stats.null_count_opt() {
                *nulls.entry(id).or_default() += count;
            }
            let logical = column.column_descr().logical_type_ref().cloned();
            if let Some((min, max)) = bounds(stats, logical) {
                widen(&mut lower, id, min, |new, old| new < old);
                widen(&mut upper, id, max, |new, old| new > old);
            }
        }
    }
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(location)
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .partition_spec_id(spec_id)
        .record_count(metadata.file_metadata().num_rows().max(0) as u64)
        .file_size_in_bytes(size)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(split_offsets))
        .build()
        .map_err(|e| e.to_string())
}

fn widen(
    bounds: &mut HashMap<i32, Datum>,
    id: i32,
    value: Datum,
    better: fn(&Datum, &Datum) -> bool,
) {
    match bounds.get(&id) {
        Some(old) if !better(&value, old) => {}
        _ => {
            bounds.insert(id, value);
        }
    }
}

/// A column chunk's exact minimum and maximum as Iceberg values: longs, doubles and
/// microsecond timestamps only (string maxima may be truncated; other types are left out).
fn bounds(
    stats: &Statistics,
    logical: Option<deltalake::parquet::basic::LogicalType>,
) -> Option<(Datum, Datum)> {
    use deltalake::parquet::basic::{LogicalType, TimeUnit};
    if !stats.min_is_exact() || !stats.max_is_exact() {
        return None;
    }
    match stats {
        Statistics::Int64(s) => {
            let (min, max) = (*s.min_opt()?, *s.max_opt()?);
            match logical {
                Some(LogicalType::Timestamp(t)) if matches!(t.unit, TimeUnit::MICROS) => {
                    match t.is_adjusted_to_u_t_c {
                        true => Some((
                            Datum::timestamptz_micros(min),
                            Datum::timestamptz_micros(max),
                        )),
                        false => Some((Datum::timestamp_micros(min), Datum::timestamp_micros(max))),
                    }
                }
                None | Some(LogicalType::Integer { .. }) => {
                    Some((Datum::long(min), Datum::long(max)))
                }
                _ => None,
            }
        }
        Statistics::Double(s) => {
            let (min, max) = (*s.min_opt()?, *s.max_opt()?);
            (!min.is_nan() && !max.is_nan()).then(|| (Datum::double(min), Datum::double(max)))
        }
        _ => None,
    }
}
