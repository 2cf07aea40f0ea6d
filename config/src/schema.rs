//! The canonical observation schema: the one Arrow layout every source produces.
//!
//! Column order: `time`, `station`, `latitude`, `longitude`, then the configured numeric
//! variables (in config order), then the configured categorical fields (in config order).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Event time, `Timestamp(Microsecond, "UTC")`, never null.
pub const TIME: &str = "time";
/// Station, platform or instrument id, `Utf8` (or `Dictionary(Int32, Utf8)`), never null.
pub const STATION: &str = "station";
/// Latitude in signed decimal degrees, `Float64`, nullable until a position is known.
pub const LATITUDE: &str = "latitude";
/// Longitude in signed decimal degrees, `Float64`, nullable until a position is known.
pub const LONGITUDE: &str = "longitude";
/// The timezone every event time is normalised to.
pub const UTC: &str = "UTC";

/// The Arrow type of the [`TIME`] column.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// Builds the canonical schema for the given variables (all `Float64`, nullable) and
/// categorical fields (all `Utf8`, nullable).
pub fn observation_schema(variables: &[String], categorical: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new(TIME, time_type(), false),
        Field::new(STATION, DataType::Utf8, false),
        Field::new(LATITUDE, DataType::Float64, true),
        Field::new(LONGITUDE, DataType::Float64, true),
    ];
    fields.extend(
        variables
            .iter()
            .map(|name| Field::new(name, DataType::Float64, true)),
    );
    fields.extend(
        categorical
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(fields))
}

/// Index of the first variable column in a canonical batch.
pub const FIRST_VARIABLE_COLUMN: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_fixed_columns_then_variables_then_categoricals() {
        let schema = observation_schema(&["temperature_c".into()], &["species".into()]);
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                TIME,
                STATION,
                LATITUDE,
                LONGITUDE,
                "temperature_c",
                "species"
            ]
        );
        assert_eq!(schema.field(FIRST_VARIABLE_COLUMN).name(), "temperature_c");
    }
}
