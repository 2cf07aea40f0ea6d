//! A seeded generator of biota-survey-like rows, shaped like the tutorial's ODP dataset
//! (Darwin Core column names): occurrence id, event date, species, station (`locationID`),
//! a position given by decimal latitude/longitude and/or a WKT footprint polygon, depth range
//! and a count. Awkward cases are included on purpose: rows with only a footprint, rows with
//! neither position, rows without species or station, and (optionally) an unparseable
//! footprint.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Species names of the generated rows.
pub const SPECIES: [&str; 10] = [
    "Gadus morhua",
    "Clupea harengus",
    "Calanus finmarchicus",
    "Pandalus borealis",
    "Sebastes mentella",
    "Mallotus villosus",
    "Lophelia pertusa",
    "Paragorgia arborea",
    "Geodia barretti",
    "Boreogadus saida",
];

/// 2020-01-01T00:00:00Z in µs.
pub const START_US: i64 = 1_577_836_800_000_000;

/// Minutes between consecutive rows' event dates (strictly increasing, so `eventDate` is a
/// monotone column for follow mode).
pub const STEP_MINUTES: i64 = 7;

/// Half the side of a footprint square, in degrees.
pub const FOOTPRINT_HALF: f64 = 0.01;

/// The schema of generated rows; `footprintWKT` is flagged `isGeometry` as ODP does.
pub fn schema() -> SchemaRef {
    let geometry = Field::new("footprintWKT", DataType::Utf8, true).with_metadata(
        std::collections::HashMap::from([("isGeometry".to_string(), "1".to_string())]),
    );
    Arc::new(Schema::new(vec![
        Field::new("occurrenceID", DataType::Utf8, false),
        Field::new(
            "eventDate",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("scientificName", DataType::Utf8, true),
        Field::new("locationID", DataType::Utf8, true),
        Field::new("decimalLatitude", DataType::Float64, true),
        Field::new("decimalLongitude", DataType::Float64, true),
        geometry,
        Field::new("minimumDepthInMeters", DataType::Float64, true),
        Field::new("maximumDepthInMeters", DataType::Float64, true),
        Field::new("individualCount", DataType::Int64, true),
    ]))
}

/// The WKT square footprint centred on (lon, lat).
pub fn footprint(lon: f64, lat: f64) -> String {
    let (x0, x1, y0, y1) = (
        lon - FOOTPRINT_HALF,
        lon + FOOTPRINT_HALF,
        lat - FOOTPRINT_HALF,
        lat + FOOTPRINT_HALF,
    );
    format!("POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))")
}

/// Rows `first..first + rows` of the seeded sequence (the same seed and index always give the
/// same row, so a table can be grown by generating the next range).
pub fn generate(first: usize, rows: usize, seed: u64) -> Result<RecordBatch, ArrowError> {
    let mut ids = Vec::with_capacity(rows);
    let mut times = Vec::with_capacity(rows);
    let mut species = Vec::with_capacity(rows);
    let mut stations = Vec::with_capacity(rows);
    let mut lats = Vec::with_capacity(rows);
    let mut lons = Vec::with_capacity(rows);
    let mut footprints = Vec::with_capacity(rows);
    let mut min_depth = Vec::with_capacity(rows);
    let mut max_depth = Vec::with_capacity(rows);
    let mut counts = Vec::with_capacity(rows);
    for i in first..first + rows {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        ids.push(format!("occ-{i:08}"));
        times.push(START_US + i as i64 * STEP_MINUTES * 60_000_000);
        species
            .push((i % 11 != 5).then(|| SPECIES[rng.random_range(0..SPECIES.len())].to_string()));
        stations.push((i % 13 != 7).then(|| format!("PGS-{}", rng.random_range(0..6))));
        // Positions over the tutorial regions and around them (quarter-degree grid plus an
        // offset, so no point lies on a region edge).
        let lat = 48.0 + f64::from(rng.random_range(0..128u32)) * 0.25 + 0.125;
        let lon = -8.0 + f64::from(rng.random_range(0..200u32)) * 0.25 + 0.125;
        let (has_point, has_footprint) = match i % 10 {
            3 => (false, true),
            6 => (true, false),
            9 if i % 20 == 19 => (false, false),
            _ => (true, true),
        };
        lats.push(has_point.then_some(lat));
        lons.push(has_point.then_some(lon));
        footprints.push(has_footprint.then(|| footprint(lon, lat)));
        let depth = [5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0][rng.random_range(0..7)];
        min_depth.push((i % 17 != 3).then_some(depth));
        max_depth.push((i % 19 != 4).then_some(depth * 1.5));
        counts.push(Some(rng.random_range(1..50i64)));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        Arc::new(StringArray::from(species)),
        Arc::new(StringArray::from(stations)),
        Arc::new(Float64Array::from(lats)),
        Arc::new(Float64Array::from(lons)),
        Arc::new(StringArray::from(footprints)),
        Arc::new(Float64Array::from(min_depth)),
        Arc::new(Float64Array::from(max_depth)),
        Arc::new(Int64Array::from(counts)),
    ];
    RecordBatch::try_new(schema(), columns)
}
