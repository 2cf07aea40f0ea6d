//! [`AggregateSpec`]: what the operators compute, taken from a validated configuration.

use oceanflow_config::{BucketWidth, CalendarPart, Region, ValidConfig};

/// The aggregate families to compute, in the typed form the operators use.
///
/// Disabled families are empty (or `false`): a disabled temporal family has no buckets and no
/// calendar parts, a disabled regional family has no regions and no distinct fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AggregateSpec {
    /// Numeric variables, in canonical column order (column 4 onwards).
    pub variables: Vec<String>,
    /// Whether the per-station family runs.
    pub station: bool,
    /// UTC bucket widths aggregated over all stations (no repeats).
    pub buckets: Vec<BucketWidth>,
    /// UTC bucket widths aggregated per station (no repeats).
    pub station_buckets: Vec<BucketWidth>,
    /// Calendar parts aggregated over all stations (no repeats).
    pub calendar: Vec<CalendarPart>,
    /// Regions; region ids are indices into this list (and into the configured regions).
    pub regions: Vec<Region>,
    /// Categorical fields counted distinct per region; field ids are indices into this list.
    pub distinct_fields: Vec<String>,
}

impl AggregateSpec {
    /// The families of `cfg`, respecting each family's `enabled` flag.
    pub fn from_config(cfg: &ValidConfig) -> Self {
        let aggregates = &cfg.config().aggregates;
        let temporal = &aggregates.temporal;
        let regional = aggregates.regional.enabled;
        AggregateSpec {
            variables: cfg.config().variables.clone(),
            station: aggregates.station.enabled,
            buckets: when(temporal.enabled, unique(&temporal.buckets)),
            station_buckets: when(temporal.enabled, unique(&temporal.station_buckets)),
            calendar: when(temporal.enabled, unique(&temporal.calendar)),
            regions: when(regional, cfg.regions().to_vec()),
            distinct_fields: when(regional, cfg.distinct_fields().to_vec()),
        }
    }
}

fn when<T>(enabled: bool, items: Vec<T>) -> Vec<T> {
    if enabled {
        items
    } else {
        Vec::new()
    }
}

/// `items` without repeats, first occurrence kept (so a repeated width is not counted twice).
fn unique<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_enables_every_family() {
        let cfg = ValidConfig::embedded_default();
        let spec = AggregateSpec::from_config(&cfg);
        assert!(spec.station);
        assert_eq!(spec.variables, cfg.config().variables);
        assert_eq!(spec.buckets, cfg.config().aggregates.temporal.buckets);
        assert_eq!(spec.regions.len(), cfg.regions().len());
        assert_eq!(spec.distinct_fields, cfg.distinct_fields());
    }

    #[test]
    fn disabled_families_are_empty() {
        let mut config = ValidConfig::embedded_default().into_config();
        config.aggregates.station.enabled = false;
        config.aggregates.temporal.enabled = false;
        config.aggregates.regional.enabled = false;
        let cfg = ValidConfig::try_from_config(config).unwrap();
        let spec = AggregateSpec::from_config(&cfg);
        assert!(!spec.station);
        assert!(spec.buckets.is_empty() && spec.station_buckets.is_empty());
        assert!(spec.calendar.is_empty());
        assert!(spec.regions.is_empty() && spec.distinct_fields.is_empty());
        assert_eq!(spec.variables, cfg.config().variables);
    }

    #[test]
    fn repeats_are_dropped_in_order() {
        use BucketWidth::*;
        assert_eq!(unique(&[Day, Hour, Day]), vec![Day, Hour]);
    }
}
