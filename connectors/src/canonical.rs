//! Converting a source batch into the canonical observation schema.
//!
//! A [`Canonicalizer`] is built once per source from its column mapping. For each batch it
//! looks the mapped columns up by name, converts them column by column (fast path: a column that
//! already has the canonical type is reused as is), records per-row rejections with a reason, and
//! drops the rejected rows with one filter over all columns. Good rows never go through
//! per-row `String`s.
//!
//! Checks run in a fixed order — time, station, latitude, longitude, a missing position, then
//! the variables — and a rejected row carries the reason of the first check it failed.
//!
//! Positions are stricter than variables: a latitude or longitude that is not finite (`inf`,
//! `NaN`, `1e400`) or out of range rejects the row (`latitude_out_of_range`,
//! `longitude_out_of_range`) instead of becoming missing, and when the input has position
//! columns a row without a latitude or longitude is rejected as `missing_position`. An input
//! without position columns (a CSV header, a Parquet schema without them) is unpositioned.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    new_null_array, Array, ArrayRef, ArrowPrimitiveType, BooleanArray, Float64Array,
    PrimitiveArray, RecordBatch, StringArray,
};
use arrow_cast::cast::{cast_with_options, CastOptions};
use arrow_cast::parse::{string_to_datetime, Parser};
use arrow_schema::{ArrowError, DataType, SchemaRef, TimeUnit};
use arrow_select::filter::FilterBuilder;
use chrono::Utc;
use oceanflow_config::schema::{self, observation_schema};
use oceanflow_config::ColumnMapping;

use crate::record::row_as_json;
use crate::{RejectReason, Rejected, SourceBatch, SourceError};

/// Converts source batches of one source into the canonical observation schema.
#[derive(Debug, Clone)]
pub struct Canonicalizer {
    source: String,
    time: String,
    station: String,
    latitude: String,
    longitude: String,
    /// Source column of each configured variable, in config order.
    variables: Vec<String>,
    /// Source column of each configured categorical field, in config order.
    categorical: Vec<String>,
    schema: SchemaRef,
    /// Whether a row with neither latitude nor longitude is kept (unpositioned) rather than
    /// rejected as `missing_position` when the input has position columns.
    unpositioned_rows: bool,
}

/// Where the rows of a batch came from: their row numbers and, for text formats that keep it,
/// the raw record.
pub(crate) trait RowOrigin {
    /// The row (or line) number of the batch row `index` within its partition.
    fn row(&self, index: usize) -> u64;
    /// The raw input record of the batch row `index`, when the format keeps it.
    fn raw_record(&self, _index: usize) -> Option<String> {
        None
    }
}

/// Rows numbered consecutively from a first row.
pub(crate) struct Sequential(pub u64);

impl RowOrigin for Sequential {
    fn row(&self, index: usize) -> u64 {
        self.0 + index as u64
    }
}

/// The rejections found so far in one batch: at most one per row, the first one wins.
struct Rejections {
    flagged: Vec<bool>,
    found: Vec<(usize, RejectReason, String)>,
}

impl Rejections {
    fn new(rows: usize) -> Self {
        Rejections {
            flagged: vec![false; rows],
            found: Vec::new(),
        }
    }

    /// Rejects `row` for `reason` unless an earlier check already rejected it.
    fn add(&mut self, row: usize, reason: RejectReason, detail: impl FnOnce() -> String) {
        if !self.flagged[row] {
            self.flagged[row] = true;
            self.found.push((row, reason, detail()));
        }
    }
}

impl Canonicalizer {
    /// Builds the converter of source `source` for the configured variables and categorical
    /// fields, reading source columns through `mapping`.
    pub fn new(
        source: &str,
        mapping: &ColumnMapping,
        variables: &[String],
        categorical: &[String],
    ) -> Self {
        Canonicalizer {
            source: source.to_string(),
            time: mapping.time.clone(),
            station: mapping.station.clone(),
            latitude: mapping.latitude.clone(),
            longitude: mapping.longitude.clone(),
            variables: variables
                .iter()
                .map(|v| mapping.variable_column(v).to_string())
                .collect(),
            categorical: categorical
                .iter()
                .map(|c| mapping.categorical_column(c).to_string())
                .collect(),
            schema: observation_schema(variables, categorical),
            unpositioned_rows: false,
        }
    }

    /// Keeps rows with neither latitude nor longitude, without a position, instead of rejecting
    /// them as `missing_position` (a row with only one of them is still rejected): for sources
    /// whose records legitimately may have no position (ODP occurrence data).
    pub fn allow_unpositioned_rows(mut self) -> Self {
        self.unpositioned_rows = true;
        self
    }

    /// The canonical schema of the batches this converter produces.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The source name rejections are labelled with.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every source column the mapping reads, without duplicates, in canonical order.
    pub fn source_columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = Vec::new();
        let fixed = [&self.time, &self.station, &self.latitude, &self.longitude];
        for name in fixed
            .into_iter()
            .chain(&self.variables)
            .chain(&self.categorical)
        {
            if !columns.contains(&name.as_str()) {
                columns.push(name);
            }
        }
        columns
    }

    /// Converts `batch` (any column types) read from `partition` into the canonical schema.
    /// Rejected rows are numbered `first_row + index`. `bytes` of the result is 0; readers
    /// fill it in.
    pub fn convert(
        &self,
        partition: &str,
        first_row: u64,
        batch: &RecordBatch,
    ) -> Result<SourceBatch, SourceError> {
        self.convert_with(partition, batch, &Sequential(first_row))
    }

    /// [`Canonicalizer::convert`] with row numbers and raw records from `origin`.
    pub(crate) fn convert_with(
        &self,
        partition: &str,
        batch: &RecordBatch,
        origin: &dyn RowOrigin,
    ) -> Result<SourceBatch, SourceError> {
        let arrow_err = |source| SourceError::Arrow {
            path: partition.to_string(),
            source,
        };
        let rows = batch.num_rows();
        let mut rejections = Rejections::new(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());

        let time = self.required(partition, batch, &self.time, schema::TIME)?;
        columns.push(convert_time(&self.time, time, &mut rejections).map_err(arrow_err)?);
        let station = self.required(partition, batch, &self.station, schema::STATION)?;
        columns.push(convert_station(station, &mut rejections).map_err(arrow_err)?);
        // An input without position columns is unpositioned; one with them needs a position
        // in every row (see `allow_unpositioned_rows`).
        let positioned = [&self.latitude, &self.longitude]
            .iter()
            .any(|name| batch.column_by_name(name).is_some());
        for (name, limit, reason) in [
            (&self.latitude, 90.0, RejectReason::LatitudeOutOfRange),
            (&self.longitude, 180.0, RejectReason::LongitudeOutOfRange),
        ] {
            let column = match batch.column_by_name(name) {
                Some(array) => {
                    let check = PositionCheck {
                        name,
                        limit,
                        reason,
                    };
                    convert_position(&check, array, &mut rejections).map_err(arrow_err)?
                }
                None => new_null_array(&DataType::Float64, rows),
            };
            columns.push(column);
        }
        if positioned {
            self.reject_missing_positions(&columns[2], &columns[3], &mut rejections);
        }
        for name in &self.variables {
            columns.push(match batch.column_by_name(name) {
                Some(array) => convert_number(name, array, &mut rejections).map_err(arrow_err)?,
                None => new_null_array(&DataType::Float64, rows),
            });
        }
        for name in &self.categorical {
            columns.push(match batch.column_by_name(name) {
                Some(array) => convert_text(array).map_err(arrow_err)?,
                None => new_null_array(&DataType::Utf8, rows),
            });
        }

        let good = keep_good_rows(columns, &rejections.flagged).map_err(arrow_err)?;
        let schema = if good[1].data_type() == &DataType::Utf8 {
            self.schema()
        } else {
            with_station_type(&self.schema, good[1].data_type())
        };
        let batch_out = RecordBatch::try_new(schema, good).map_err(arrow_err)?;
        let rejected = self.rejected_rows(partition, batch, origin, rejections.found);
        Ok(SourceBatch {
            batch: batch_out,
            rejected,
            bytes: 0,
            position: None,
            lanes: None,
        })
    }

    /// Rejects the rows without a latitude or longitude (only those with one but not the other
    /// when unpositioned rows are allowed).
    fn reject_missing_positions(
        &self,
        latitude: &ArrayRef,
        longitude: &ArrayRef,
        rejections: &mut Rejections,
    ) {
        if latitude.null_count() == 0 && longitude.null_count() == 0 {
            return;
        }
        for row in 0..latitude.len() {
            let missing = match (latitude.is_null(row), longitude.is_null(row)) {
                (false, false) => continue,
                (true, true) if self.unpositioned_rows => continue,
                (true, true) => format!("no {} and no {}", self.latitude, self.longitude),
                (true, false) => format!("column {}: no value", self.latitude),
                (false, true) => format!("column {}: no value", self.longitude),
            };
            rejections.add(row, RejectReason::MissingPosition, || missing);
        }
    }

    /// The column `name` of `batch`, or [`SourceError::MissingColumn`].
    fn required<'b>(
        &self,
        partition: &str,
        batch: &'b RecordBatch,
        name: &str,
        canonical: &str,
    ) -> Result<&'b ArrayRef, SourceError> {
        batch
            .column_by_name(name)
            .ok_or_else(|| SourceError::MissingColumn {
                path: partition.to_string(),
                column: name.to_string(),
                canonical: canonical.to_string(),
                found: batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            })
    }

    /// Turns the found rejections into [`Rejected`] records, sorted by row.
    fn rejected_rows(
        &self,
        partition: &str,
        batch: &RecordBatch,
        origin: &dyn RowOrigin,
        mut found: Vec<(usize, RejectReason, String)>,
    ) -> Vec<Rejected> {
        if found.is_empty() {
            return Vec::new();
        }
        found.sort_by_key(|(row, _, _)| *row);
        found
            .into_iter()
            .map(|(index, reason, detail)| Rejected {
                source: self.source.clone(),
                partition: partition.to_string(),
                row: Some(origin.row(index)),
                reason,
                detail,
                record: origin
                    .raw_record(index)
                    .unwrap_or_else(|| row_as_json(batch, index)),
            })
            .collect()
    }
}

fn safe_cast() -> CastOptions<'static> {
    CastOptions {
        safe: true,
        ..CastOptions::default()
    }
}

/// Whether `data_type` is text the converters parse value by value.
fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// Any text column as a `Utf8` array (reusing it when it already is one).
fn as_utf8(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    if array.data_type() == &DataType::Utf8 {
        Ok(Arc::clone(array))
    } else {
        cast_with_options(array, &DataType::Utf8, &safe_cast())
    }
}

/// Converts the time column to `Timestamp(µs, "UTC")`, rejecting missing and unparseable times.
fn convert_time(
    name: &str,
    array: &ArrayRef,
    rejections: &mut Rejections,
) -> Result<ArrayRef, ArrowError> {
    let target = schema::time_type();
    let converted: ArrayRef = match array.data_type() {
        t if t == &target => Arc::clone(array),
        DataType::Timestamp(unit, _) => Arc::new(timestamp_micros(array, *unit)),
        DataType::Date32 => Arc::new(rescaled::<Date32Type>(array, |days| {
            i64::from(days).checked_mul(MICROS_PER_DAY)
        })),
        DataType::Date64 => Arc::new(rescaled::<Date64Type>(array, |ms| ms.checked_mul(1000))),
        t if t.is_integer() => Arc::new(epoch_seconds(array)?),
        t if is_text(t) => {
            let text = as_utf8(array)?;
            return Ok(Arc::new(parse_times(
                name,
                text.as_string::<i32>(),
                rejections,
            )));
        }
        other => {
            return Err(ArrowError::CastError(format!(
                "time column {name:?} has type {other}; expected text, a timestamp, a date or \
                 integer epoch seconds"
            )))
        }
    };
    for row in 0..array.len() {
        if array.is_null(row) {
            rejections.add(row, RejectReason::MissingTime, || {
                format!("column {name}: no time")
            });
        } else if converted.is_null(row) {
            rejections.add(row, RejectReason::UnparseableTime, || {
                format!("column {name}: time out of the representable range")
            });
        }
    }
    Ok(converted)
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Timestamps of any unit as microseconds. Zoned and naive timestamps alike hold UTC epoch
/// values, so only the unit changes; the result is labelled `UTC`.
fn timestamp_micros(array: &ArrayRef, unit: TimeUnit) -> PrimitiveArray<TimestampMicrosecondType> {
    match unit {
        TimeUnit::Second => rescaled::<TimestampSecondType>(array, |s| s.checked_mul(1_000_000)),
        TimeUnit::Millisecond => {
            rescaled::<TimestampMillisecondType>(array, |ms| ms.checked_mul(1000))
        }
        TimeUnit::Microsecond => rescaled::<TimestampMicrosecondType>(array, Some),
        TimeUnit::Nanosecond => {
            rescaled::<TimestampNanosecondType>(array, |ns| Some(ns.div_euclid(1000)))
        }
    }
}

/// Maps the values of a primitive array to UTC microseconds; `None` (overflow) becomes null.
fn rescaled<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    to_micros: impl Fn(T::Native) -> Option<i64>,
) -> PrimitiveArray<TimestampMicrosecondType> {
    let micros: PrimitiveArray<TimestampMicrosecondType> = array
        .as_primitive::<T>()
        .iter()
        .map(|v| v.and_then(&to_micros))
        .collect();
    micros.with_timezone(schema::UTC)
}

/// Integer epoch seconds as microseconds; out-of-range values become null.
fn epoch_seconds(array: &ArrayRef) -> Result<PrimitiveArray<TimestampMicrosecondType>, ArrowError> {
    let seconds = cast_with_options(array, &DataType::Int64, &safe_cast())?;
    Ok(rescaled::<Int64Type>(&seconds, |s| {
        s.checked_mul(1_000_000)
    }))
}

/// Parses text times: RFC 3339 / ISO 8601 with or without zone (no zone = UTC), plain dates,
/// and integer epoch seconds.
fn parse_times(
    name: &str,
    text: &StringArray,
    rejections: &mut Rejections,
) -> PrimitiveArray<TimestampMicrosecondType> {
    let parsed: PrimitiveArray<TimestampMicrosecondType> = text
        .iter()
        .enumerate()
        .map(|(row, value)| {
            let value = value.map(str::trim).unwrap_or_default();
            if value.is_empty() {
                rejections.add(row, RejectReason::MissingTime, || {
                    format!("column {name}: no time")
                });
                return None;
            }
            let micros = parse_time_text(value);
            if micros.is_none() {
                rejections.add(row, RejectReason::UnparseableTime, || {
                    format!("column {name}: {value:?} is not a time")
                });
            }
            micros
        })
        .collect();
    parsed.with_timezone(schema::UTC)
}

/// One text time as microseconds since the epoch (UTC).
pub(crate) fn parse_time_text(value: &str) -> Option<i64> {
    match string_to_datetime(&Utc, value) {
        Ok(time) => Some(time.timestamp_micros()),
        Err(_) => value.parse::<i64>().ok()?.checked_mul(1_000_000),
    }
}

/// The canonical schema with the station column's encoding replaced.
fn with_station_type(schema: &SchemaRef, station: &DataType) -> SchemaRef {
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields[1] = Arc::new(fields[1].as_ref().clone().with_data_type(station.clone()));
    Arc::new(arrow_schema::Schema::new(fields))
}

/// Converts the station column to `Utf8`, rejecting missing or blank ids. A
/// `Dictionary(Int32, Utf8)` column (Parquet's usual encoding) is kept as it is: the operators
/// intern its few values once instead of hashing a string per row.
fn convert_station(array: &ArrayRef, rejections: &mut Rejections) -> Result<ArrayRef, ArrowError> {
    if let Some(dict) = array.as_dictionary_opt::<Int32Type>() {
        if let Some(values) = dict.values().as_string_opt::<i32>() {
            // Judge each dictionary value once, then each row by its key.
            let blank_value: Vec<bool> = values
                .iter()
                .map(|v| v.is_none_or(|v| v.trim().is_empty()))
                .collect();
            let keys = dict.keys();
            let blank = |row: usize| {
                keys.is_null(row)
                    || usize::try_from(keys.value(row))
                        .ok()
                        .and_then(|k| blank_value.get(k))
                        .is_none_or(|b| *b)
            };
            if blank_value.iter().any(|b| *b) || keys.null_count() > 0 {
                for row in (0..keys.len()).filter(|row| blank(*row)) {
                    rejections.add(row, RejectReason::MissingStation, || {
                        "no station id".to_string()
                    });
                }
            }
            return Ok(Arc::clone(array));
        }
    }
    let text = as_utf8(array)?;
    for (row, value) in text.as_string::<i32>().iter().enumerate() {
        if value.is_none_or(|v| v.trim().is_empty()) {
            rejections.add(row, RejectReason::MissingStation, || {
                "no station id".to_string()
            });
        }
    }
    Ok(text)
}

/// Converts a numeric column to `Float64`: numbers are cast, text is parsed (empty → null,
/// non-numbers rejected), and NaN or infinite values become null.
fn convert_number(
    name: &str,
    array: &ArrayRef,
    rejections: &mut Rejections,
) -> Result<ArrayRef, ArrowError> {
    let numbers: ArrayRef = match array.data_type() {
        DataType::Float64 => Arc::clone(array),
        t if is_text(t) => {
            let text = as_utf8(array)?;
            return Ok(Arc::new(parse_numbers(
                name,
                text.as_string::<i32>(),
                rejections,
            )));
        }
        t if t.is_numeric() => cast_with_options(array, &DataType::Float64, &safe_cast())?,
        other => {
            return Err(ArrowError::CastError(format!(
                "column {name:?} has type {other}; expected numbers or text"
            )))
        }
    };
    Ok(finite_only(numbers))
}

/// Replaces NaN and infinite values with nulls; reuses the array when there are none.
fn finite_only(numbers: ArrayRef) -> ArrayRef {
    let values = numbers.as_primitive::<Float64Type>();
    if values.values().iter().all(|v| v.is_finite()) {
        return numbers;
    }
    let cleaned: Float64Array = values.iter().map(|v| v.filter(|v| v.is_finite())).collect();
    Arc::new(cleaned)
}

/// Parses text numbers; empty text, `NaN` and infinities become null.
fn parse_numbers(name: &str, text: &StringArray, rejections: &mut Rejections) -> Float64Array {
    text.iter()
        .enumerate()
        .map(|(row, value)| match read_text_number(value) {
            TextNumber::Finite(v) => Some(v),
            TextNumber::Blank | TextNumber::NonFinite(_) => None,
            TextNumber::NotANumber(value) => {
                reject_non_numeric(name, row, value, rejections);
                None
            }
        })
        .collect()
}

/// What one text cell holds as a number.
enum TextNumber<'a> {
    /// Null or empty after trimming.
    Blank,
    Finite(f64),
    /// `NaN`, an infinity or a number beyond `f64`, as written (trimmed).
    NonFinite(&'a str),
    /// Anything else, as written (trimmed).
    NotANumber(&'a str),
}

/// Classifies one text cell; shared by variables and positions, which differ only in
/// what they make of a non-finite value.
fn read_text_number(value: Option<&str>) -> TextNumber<'_> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return TextNumber::Blank;
    }
    match Float64Type::parse(value) {
        Some(v) if v.is_finite() => TextNumber::Finite(v),
        Some(_) => TextNumber::NonFinite(value),
        None if is_non_finite_word(value) => TextNumber::NonFinite(value),
        None => TextNumber::NotANumber(value),
    }
}

fn reject_non_numeric(name: &str, row: usize, value: &str, rejections: &mut Rejections) {
    rejections.add(row, RejectReason::NonNumeric, || {
        format!("column {name}: {value:?} is not a number")
    });
}

/// `NaN`, `inf`, `infinity` with an optional sign, any case.
fn is_non_finite_word(value: &str) -> bool {
    let unsigned = value.trim_start_matches(['+', '-']);
    ["nan", "inf", "infinity"]
        .iter()
        .any(|word| unsigned.eq_ignore_ascii_case(word))
}

/// How one position column is judged.
struct PositionCheck<'a> {
    name: &'a str,
    /// Valid values lie in `[-limit, limit]`.
    limit: f64,
    /// The reason of a value outside them (or not finite).
    reason: RejectReason,
}

/// Converts a latitude or longitude column to `Float64`, rejecting text that is not a number
/// (`non_numeric`) and values that are not finite or out of range (`check.reason`). Unlike a
/// variable, a non-finite position is never turned into a missing one.
fn convert_position(
    check: &PositionCheck<'_>,
    array: &ArrayRef,
    rejections: &mut Rejections,
) -> Result<ArrayRef, ArrowError> {
    let name = check.name;
    let numbers: ArrayRef = match array.data_type() {
        DataType::Float64 => Arc::clone(array),
        t if is_text(t) => {
            let text = as_utf8(array)?;
            let parsed: Float64Array = text
                .as_string::<i32>()
                .iter()
                .enumerate()
                .map(|(row, value)| {
                    match read_text_number(value) {
                        TextNumber::Finite(v) => return Some(v),
                        TextNumber::Blank => {}
                        TextNumber::NotANumber(value) => {
                            reject_non_numeric(name, row, value, rejections)
                        }
                        TextNumber::NonFinite(value) => rejections.add(row, check.reason, || {
                            format!("column {name}: {value:?} is not finite")
                        }),
                    }
                    None
                })
                .collect();
            Arc::new(parsed)
        }
        t if t.is_numeric() => cast_with_options(array, &DataType::Float64, &safe_cast())?,
        other => {
            return Err(ArrowError::CastError(format!(
                "column {name:?} has type {other}; expected numbers or text"
            )))
        }
    };
    let limit = check.limit;
    for (row, value) in numbers.as_primitive::<Float64Type>().iter().enumerate() {
        match value {
            Some(v) if !v.is_finite() => rejections.add(row, check.reason, || {
                format!("column {name}: {v} is not finite")
            }),
            Some(v) if !(-limit..=limit).contains(&v) => rejections.add(row, check.reason, || {
                format!("column {name}: {v} is outside [-{limit}, {limit}]")
            }),
            _ => {}
        }
    }
    Ok(numbers)
}

/// Converts a categorical column to `Utf8`, empty text becoming null.
fn convert_text(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let text = as_utf8(array)?;
    let strings = text.as_string::<i32>();
    if !strings.iter().any(|v| v == Some("")) {
        return Ok(text);
    }
    let cleaned: StringArray = strings
        .iter()
        .map(|v| v.filter(|v| !v.is_empty()))
        .collect();
    Ok(Arc::new(cleaned))
}

/// Drops the flagged rows from every column with one shared filter predicate.
fn keep_good_rows(columns: Vec<ArrayRef>, flagged: &[bool]) -> Result<Vec<ArrayRef>, ArrowError> {
    if !flagged.contains(&true) {
        return Ok(columns);
    }
    let keep: BooleanArray = flagged.iter().map(|bad| Some(!bad)).collect();
    let predicate = FilterBuilder::new(&keep).optimize().build();
    columns.iter().map(|c| predicate.filter(c)).collect()
}

#[cfg(test)]
mod tests;
