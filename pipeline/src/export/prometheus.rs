//! Prometheus text exposition: the health registry plus the aggregate families, built from a
//! [`Snapshot`] at scrape time (so the aggregates are never copied into per-series objects).
//!
//! Counts are counters (`_total`): they only grow while a key is live. Bucket series are
//! limited to the newest `export.metrics_buckets` buckets per (grouping, station) so label
//! cardinality stays bounded; the JSON API has them all.

use std::collections::HashMap;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use super::output::{Snapshot, TemporalRow, VariableSummary};
use crate::metrics::names;

/// Renders the whole `/metrics` page.
pub fn render(registry: &Registry, snapshot: &Snapshot, metrics_buckets: usize) -> String {
    let mut families = registry.gather();
    families.extend(aggregate_families(snapshot, metrics_buckets));
    let mut out = Vec::new();
    match TextEncoder::new().encode(&families, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(error) => format!("# encoding failed: {error}\n"),
    }
}

/// Collects one family per metric name.
#[derive(Default)]
struct Families {
    by_name: Vec<MetricFamily>,
    index: HashMap<String, usize>,
}

impl Families {
    fn push(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            let mut family = MetricFamily::default();
            family.set_name(name.to_string());
            family.set_help(help.to_string());
            family.set_field_type(kind);
            self.by_name.push(family);
            self.by_name.len() - 1
        });
        let mut metric = Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(k.to_string());
                    pair.set_value(v.to_string());
                    pair
                })
                .collect(),
        );
        match kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                metric.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                metric.set_gauge(g);
            }
        }
        self.by_name[i].mut_metric().push(metric);
    }

    /// The `_observations_total`, `_mean`, `_min`, `_max`, `_stddev` series of each variable.
    fn variables<'a>(
        &mut self,
        prefix: &str,
        what: &str,
        labels: &[(&str, &'a str)],
        variables: &'a std::collections::BTreeMap<String, VariableSummary>,
    ) {
        for (name, v) in variables {
            let mut labels = labels.to_vec();
            labels.push(("variable", name.as_str()));
            self.push(
                &format!("{prefix}_observations_total"),
                &format!("Non-null values of the variable {what}."),
                MetricType::COUNTER,
                &labels,
                v.count as f64,
            );
            for (suffix, value) in [
                ("mean", v.mean),
                ("min", v.min),
                ("max", v.max),
                ("stddev", v.stddev),
            ] {
                if let Some(value) = value {
                    self.push(
                        &format!("{prefix}_{suffix}"),
                        &format!("{suffix} of the variable {what}, in the variable's unit."),
                        MetricType::GAUGE,
                        &labels,
                        value,
                    );
                }
            }
        }
    }
}

fn aggregate_families(snapshot: &Snapshot, metrics_buckets: usize) -> Vec<MetricFamily> {
    let mut f = Families::default();
    for row in &snapshot.stations {
        let labels = [("station", row.station.as_str())];
        f.push(
            names::STATION_OBSERVATIONS,
            "Observations per station.",
            MetricType::COUNTER,
            &labels,
            row.count as f64,
        );
        f.variables(
            names::STATION_VARIABLE,
            "per station",
            &labels,
            &row.variables,
        );
    }
    for row in newest_buckets(&snapshot.temporal, metrics_buckets) {
        let labels = [
            ("grouping", row.grouping),
            ("bucket", row.key.as_str()),
            ("station", row.station.as_deref().unwrap_or("")),
        ];
        f.push(
            names::TEMPORAL_OBSERVATIONS,
            "Observations per UTC bucket or calendar part (station empty: all stations).",
            MetricType::COUNTER,
            &labels,
            row.count as f64,
        );
        f.variables(
            names::TEMPORAL_VARIABLE,
            "per bucket",
            &labels,
            &row.variables,
        );
    }
    for row in &snapshot.regions {
        let labels = [("region", row.region.as_str())];
        f.push(
            names::REGION_OBSERVATIONS,
            "Observations inside the region.",
            MetricType::COUNTER,
            &labels,
            row.count as f64,
        );
        f.variables(
            names::REGION_VARIABLE,
            "per region",
            &labels,
            &row.variables,
        );
        for (field, n) in &row.distinct {
            f.push(
                names::REGION_DISTINCT,
                "Distinct values of a categorical field inside the region.",
                MetricType::GAUGE,
                &[("region", row.region.as_str()), ("field", field.as_str())],
                *n as f64,
            );
        }
    }
    f.by_name
}

/// Calendar parts in full; for bucket groupings only the newest `keep` per (grouping, station).
/// Rows arrive sorted by grouping, key, station.
fn newest_buckets(rows: &[TemporalRow], keep: usize) -> Vec<&TemporalRow> {
    let mut per_series: HashMap<(&str, Option<&str>), Vec<&TemporalRow>> = HashMap::new();
    let mut out = Vec::new();
    for row in rows {
        if row.is_bucket {
            per_series
                .entry((row.grouping, row.station.as_deref()))
                .or_default()
                .push(row);
        } else {
            out.push(row);
        }
    }
    for (_, mut series) in per_series {
        // Keys are RFC 3339 UTC: text order is time order.
        series.sort_by(|a, b| a.key.cmp(&b.key));
        let skip = series.len().saturating_sub(keep);
        out.extend(series.into_iter().skip(skip));
    }
    out
}
