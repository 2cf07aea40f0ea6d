//! ODP rows into the canonical schema: what ODP datasets need before the shared
//! [`Canonicalizer`] — a position from the centroid of a WKT geometry column when the row has
//! no latitude/longitude, and a default station for datasets without stations — then the
//! canonical conversion (time, numbers, ranges, categorical fields) with per-row rejections.
//!
//! Positions: a row without latitude/longitude takes its geometry's centroid. A row with
//! neither (ODP occurrence data has such rows) is kept without a position, as before: it still
//! counts for its station and time. A non-finite or out-of-range position, or a latitude
//! without a longitude (or the reverse) and no geometry, rejects the row. An ODP result stream
//! is one lane: its rows are judged late against the stream's own newest event time.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow_cast::cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType, Field, Schema};
use geo::{Centroid, Geometry};
use oceanflow_config::{ColumnMapping, OdpSourceConfig};
use oceanflow_connectors::canonical::Canonicalizer;
use oceanflow_connectors::record::row_as_json;
use oceanflow_connectors::{RejectReason, Rejected, SourceBatch, SourceError};
use wkt::TryFromWkt;

/// Converts the batches of one ODP source.
#[derive(Debug, Clone)]
pub struct Converter {
    canonical: Canonicalizer,
    mapping: ColumnMapping,
    geometry: Option<String>,
    default_station: Option<String>,
}

impl Converter {
    /// The converter of `cfg` for the configured variables and categorical fields.
    pub fn new(cfg: &OdpSourceConfig, variables: &[String], categorical: &[String]) -> Self {
        Converter {
            // Occurrence records may have no position at all; they still count per station
            // and time (a half position or a non-finite one is rejected).
            canonical: Canonicalizer::new(&cfg.name, &cfg.mapping, variables, categorical)
                .allow_unpositioned_rows(),
            mapping: cfg.mapping.clone(),
            geometry: cfg.geometry.clone(),
            default_station: cfg.default_station.clone(),
        }
    }

    /// The canonical schema of the converted batches.
    pub fn schema(&self) -> arrow_schema::SchemaRef {
        self.canonical.schema()
    }

    /// Converts `batch`, whose first row is row `first_row` of the partition.
    pub fn convert(
        &self,
        partition: &str,
        first_row: u64,
        batch: &RecordBatch,
    ) -> Result<SourceBatch, SourceError> {
        let arrow_err = |source| SourceError::Arrow {
            path: partition.to_string(),
            source,
        };
        let mut batch = self.with_station(batch).map_err(arrow_err)?;
        let mut geometry_rejects = Vec::new();
        let mut kept: Option<Vec<usize>> = None;
        if let Some(column) = &self.geometry {
            if let Some((positioned, bad)) =
                self.with_centroids(&batch, column).map_err(arrow_err)?
            {
                if bad.is_empty() {
                    batch = positioned;
                } else {
                    for &(row, ref detail) in &bad {
                        geometry_rejects.push(Rejected {
                            source: self.canonical.source().to_string(),
                            partition: partition.to_string(),
                            row: Some(first_row + row as u64),
                            reason: RejectReason::UnparseableGeometry,
                            detail: detail.clone(),
                            record: row_as_json(&batch, row),
                        });
                    }
                    let keep: BooleanArray = (0..batch.num_rows())
                        .map(|row| Some(!bad.iter().any(|(r, _)| *r == row)))
                        .collect();
                    kept = Some(
                        (0..batch.num_rows())
                            .filter(|row| !bad.iter().any(|(r, _)| r == row))
                            .collect(),
                    );
                    batch = arrow_select::filter::filter_record_batch(&positioned, &keep)
                        .map_err(arrow_err)?;
                }
            }
        }
        let mut out = self.canonical.convert(partition, first_row, &batch)?;
        if let Some(kept) = kept {
            // Row numbers of the canonical rejections count the filtered batch; map them back.
            for r in &mut out.rejected {
                if let Some(row) = r.row {
                    let index = usize::try_from(row - first_row).unwrap_or(usize::MAX);
                    r.row = kept.get(index).map(|k| first_row + *k as u64);
                }
            }
        }
        out.rejected.extend(geometry_rejects);
        out.rejected.sort_by_key(|r| r.row);
        Ok(out)
    }

    /// Fills the station column from `default_station` (adding the column when absent).
    fn with_station(&self, batch: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let Some(station) = &self.default_station else {
            return Ok(batch.clone());
        };
        let name = &self.mapping.station;
        let filled: ArrayRef = match batch.column_by_name(name) {
            None => Arc::new(StringArray::from(vec![station.as_str(); batch.num_rows()])),
            Some(column) if column.null_count() == 0 => return Ok(batch.clone()),
            Some(column) => {
                let text = cast_with_options(column, &DataType::Utf8, &CastOptions::default())?;
                Arc::new(
                    text.as_string::<i32>()
                        .iter()
                        .map(|v| Some(v.unwrap_or(station)))
                        .collect::<StringArray>(),
                )
            }
        };
        replace_column(batch, name, filled)
    }

    /// Latitude/longitude from the centroid of the WKT `column` for rows that have none.
    /// `None` when the geometry column is absent or not text (nothing to do); otherwise the
    /// batch with the filled position columns and the rows whose needed geometry is not WKT.
    #[allow(clippy::type_complexity)]
    fn with_centroids(
        &self,
        batch: &RecordBatch,
        column: &str,
    ) -> Result<Option<(RecordBatch, Vec<(usize, String)>)>, arrow_schema::ArrowError> {
        let Some(geometry) = batch.column_by_name(column) else {
            return Ok(None);
        };
        if !matches!(
            geometry.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return Ok(None);
        }
        let geometry = cast_with_options(geometry, &DataType::Utf8, &CastOptions::default())?;
        let geometry = geometry.as_string::<i32>();
        let numbers = |name: &str| -> Result<Option<Float64Array>, arrow_schema::ArrowError> {
            match batch.column_by_name(name) {
                None => Ok(Some(Float64Array::from(vec![None; batch.num_rows()]))),
                Some(c) if c.data_type().is_numeric() => {
                    let f = cast_with_options(c, &DataType::Float64, &CastOptions::default())?;
                    Ok(Some(f.as_primitive::<Float64Type>().clone()))
                }
                // Text positions are parsed (and validated) by the canonical conversion.
                Some(_) => Ok(None),
            }
        };
        let (Some(lat), Some(lon)) = (
            numbers(&self.mapping.latitude)?,
            numbers(&self.mapping.longitude)?,
        ) else {
            return Ok(None);
        };
        let mut lats: Vec<Option<f64>> = lat.iter().collect();
        let mut lons: Vec<Option<f64>> = lon.iter().collect();
        let mut bad = Vec::new();
        for row in 0..batch.num_rows() {
            if lats[row].is_some() && lons[row].is_some() {
                continue;
            }
            if geometry.is_null(row) || geometry.value(row).trim().is_empty() {
                continue;
            }
            let text = geometry.value(row);
            match Geometry::<f64>::try_from_wkt_str(text)
                .ok()
                .and_then(|g| g.centroid())
            {
                Some(point) => {
                    lats[row] = Some(point.y());
                    lons[row] = Some(point.x());
                }
                None => bad.push((
                    row,
                    format!("column {column}: {} is not a WKT geometry", shorten(text)),
                )),
            }
        }
        let batch = replace_column(
            batch,
            &self.mapping.latitude,
            Arc::new(Float64Array::from(lats)),
        )?;
        let batch = replace_column(
            &batch,
            &self.mapping.longitude,
            Arc::new(Float64Array::from(lons)),
        )?;
        Ok(Some((batch, bad)))
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{:?}…", &text[..i]),
        None => format!("{text:?}"),
    }
}

/// `batch` with column `name` replaced by `array` (appended when absent).
fn replace_column(
    batch: &RecordBatch,
    name: &str,
    array: ArrayRef,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let field = Arc::new(Field::new(name, array.data_type().clone(), true));
    match schema.index_of(name) {
        Ok(i) => {
            fields[i] = field;
            columns[i] = array;
        }
        Err(_) => {
            fields.push(field);
            columns.push(array);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> OdpSourceConfig {
        toml::from_str(&format!(
            "name = \"b\"\ndataset = \"1d801817-742b-4867-82cf-5597673524eb\"\n{extra}\n\
             [mapping]\ntime = \"t\"\nstation = \"loc\"\nlatitude = \"lat\"\nlongitude = \"lon\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn centroids_fill_missing_positions_and_bad_wkt_is_rejected() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Utf8, false),
            Field::new("lat", DataType::Float64, true),
            Field::new("lon", DataType::Float64, true),
            Field::new("wkt", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["2020-01-01T00:00:00Z"; 4])),
                Arc::new(Float64Array::from(vec![Some(60.0), None, None, None])),
                Arc::new(Float64Array::from(vec![Some(5.0), None, None, None])),
                Arc::new(StringArray::from(vec![
                    Some("POLYGON((0 0, 2 0, 2 2, 0 2, 0 0))"),
                    Some("POLYGON((0 50, 2 50, 2 52, 0 52, 0 50))"),
                    Some("POLYGON((oops"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let c = Converter::new(
            &cfg("geometry = \"wkt\"\ndefault_station = \"survey\""),
            &[],
            &[],
        );
        let out = c.convert("p", 10, &batch).unwrap();
        assert_eq!(out.batch.num_rows(), 3);
        let lat = out.batch.column(2).as_primitive::<Float64Type>();
        let lon = out.batch.column(3).as_primitive::<Float64Type>();
        assert_eq!(lat.value(0), 60.0);
        assert_eq!((lat.value(1), lon.value(1)), (51.0, 1.0));
        assert!(
            lat.is_null(2) && lon.is_null(2),
            "no position, no geometry: kept"
        );
        assert_eq!(out.batch.column(1).as_string::<i32>().value(0), "survey");
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].row, Some(12));
        assert_eq!(out.rejected[0].reason, RejectReason::UnparseableGeometry);
        assert!(
            out.rejected[0].record.contains("oops"),
            "{}",
            out.rejected[0].record
        );
    }

    /// Non-finite and half positions are rejected; the record shows the row's values.
    #[test]
    fn non_finite_and_half_positions_are_rejected() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Utf8, false),
            Field::new("loc", DataType::Utf8, true),
            Field::new("lat", DataType::Float64, true),
            Field::new("lon", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["2020-01-01T00:00:00Z"; 4])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(Float64Array::from(vec![
                    Some(f64::INFINITY),
                    Some(60.0),
                    Some(60.0),
                    None,
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(5.0),
                    Some(f64::NAN),
                    None,
                    None,
                ])),
            ],
        )
        .unwrap();
        let c = Converter::new(&cfg(""), &[], &[]);
        let out = c.convert("p", 0, &batch).unwrap();
        let rows: Vec<_> = out.rejected.iter().map(|r| (r.row, r.reason)).collect();
        assert_eq!(
            rows,
            [
                (Some(0), RejectReason::LatitudeOutOfRange),
                (Some(1), RejectReason::LongitudeOutOfRange),
                (Some(2), RejectReason::MissingPosition)
            ]
        );
        assert!(
            out.rejected[0].detail.contains("not finite"),
            "{:?}",
            out.rejected[0]
        );
        let record: serde_json::Value = serde_json::from_str(&out.rejected[0].record).unwrap();
        assert_eq!(
            (&record["loc"], &record["lat"]),
            (&"a".into(), &"inf".into())
        );
        assert_eq!(out.batch.num_rows(), 1, "no position at all: kept");
    }

    #[test]
    fn canonical_rejections_keep_their_original_row_numbers() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Utf8, false),
            Field::new("loc", DataType::Utf8, true),
            Field::new("wkt", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["2020-01-01", "2020-01-01", "never"])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("c")])),
                Arc::new(StringArray::from(vec!["bad", "POINT(1 2)", "POINT(1 2)"])),
            ],
        )
        .unwrap();
        let c = Converter::new(&cfg("geometry = \"wkt\""), &[], &[]);
        let out = c.convert("p", 0, &batch).unwrap();
        let rows: Vec<_> = out.rejected.iter().map(|r| (r.row, r.reason)).collect();
        assert_eq!(
            rows,
            [
                (Some(0), RejectReason::UnparseableGeometry),
                (Some(2), RejectReason::UnparseableTime)
            ]
        );
        assert_eq!(out.batch.num_rows(), 1);
    }
}
