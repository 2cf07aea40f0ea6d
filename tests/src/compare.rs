//! Compares two `--output` documents table by table: the key sets and every count exactly,
//! statistics within a [`Tolerance`], distinct counts exactly. Each difference is one line
//! naming the table, the key and the field, so the first few say what went wrong.

use std::collections::BTreeMap;

use serde_json::Value;

/// How close two statistics must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// `|a - b| <= 1e-7 * (1 + max(|a|, |b|))` for every statistic: for oracles of paths that
    /// round on the way (text formats, single-pass statistics).
    Loose,
    /// Relative: a mean within `rel` of the group's magnitude (`max(|min|, |max|)`: a mean near
    /// zero carries the rounding of its largest values), min, max and stddev within `rel` of
    /// themselves (so a constant series must have stddev exactly 0).
    Relative(f64),
}

impl Tolerance {
    fn close(self, stat: &str, a: f64, b: f64, magnitude: f64) -> bool {
        let diff = (a - b).abs();
        match self {
            Tolerance::Loose => diff <= 1e-7 * (1.0 + a.abs().max(b.abs())),
            Tolerance::Relative(rel) if stat == "mean" => {
                diff <= rel * magnitude.max(a.abs()).max(b.abs())
            }
            Tolerance::Relative(rel) => diff <= rel * a.abs().max(b.abs()),
        }
    }
}

/// Every difference between `expected` and `actual`, one line each (empty: equal).
pub fn compare_documents(expected: &Value, actual: &Value, tolerance: Tolerance) -> Vec<String> {
    let mut problems = Vec::new();
    for table in ["stations", "temporal", "regions"] {
        let (want, got) = (keyed(table, &expected[table]), keyed(table, &actual[table]));
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let unexpected: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            problems.push(format!(
                "{table}: {} rows, expected {}; {} missing (first {:?}), {} unexpected (first {:?})",
                got.len(),
                want.len(),
                missing.len(),
                &missing[..missing.len().min(3)],
                unexpected.len(),
                &unexpected[..unexpected.len().min(3)],
            ));
        }
        for (key, want_row) in &want {
            if let Some(got_row) = got.get(key) {
                compare_rows(
                    &format!("{table} {key}"),
                    want_row,
                    got_row,
                    tolerance,
                    &mut problems,
                );
            }
        }
    }
    problems
}

/// `label: N differences, first: …` for assertion messages; `None` when there are none.
pub fn summarise(label: &str, problems: &[String]) -> Option<String> {
    (!problems.is_empty()).then(|| {
        format!(
            "{label}: {} differences, first:\n  {}",
            problems.len(),
            problems[..problems.len().min(8)].join("\n  ")
        )
    })
}

/// A table's rows by a readable key (`STATION-001`, `hour 2020-01-01T00:00:00Z -`, …).
fn keyed<'a>(table: &str, rows: &'a Value) -> BTreeMap<String, &'a Value> {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    rows.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|row| {
            let key = match table {
                "stations" => text(&row["station"]),
                "temporal" => format!(
                    "{} {} {}",
                    text(&row["grouping"]),
                    text(&row["key"]),
                    text(&row["station"])
                ),
                _ => text(&row["region"]),
            };
            (key, row)
        })
        .collect()
}

fn compare_rows(
    label: &str,
    want: &Value,
    got: &Value,
    tolerance: Tolerance,
    problems: &mut Vec<String>,
) {
    if want["count"] != got["count"] {
        problems.push(format!(
            "{label}: count {} expected {}",
            got["count"], want["count"]
        ));
    }
    if want.get("distinct") != got.get("distinct") {
        problems.push(format!(
            "{label}: distinct {} expected {}",
            got["distinct"], want["distinct"]
        ));
    }
    let names = |row: &Value| -> Vec<String> {
        row["variables"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut variables = names(want);
    variables.extend(names(got));
    variables.sort();
    variables.dedup();
    for name in variables {
        let (w, g) = (&want["variables"][&name], &got["variables"][&name]);
        if w["count"] != g["count"] {
            problems.push(format!(
                "{label} {name}: count {} expected {}",
                g["count"], w["count"]
            ));
            continue;
        }
        let magnitude = w["min"]
            .as_f64()
            .unwrap_or(0.0)
            .abs()
            .max(w["max"].as_f64().unwrap_or(0.0).abs());
        for stat in ["mean", "min", "max", "stddev"] {
            let equal = match (w[stat].as_f64(), g[stat].as_f64()) {
                (Some(a), Some(b)) => tolerance.close(stat, a, b, magnitude),
                (None, None) => true,
                _ => false,
            };
            if !equal {
                let relative = match (w[stat].as_f64(), g[stat].as_f64()) {
                    (Some(a), Some(b)) if a != 0.0 => {
                        format!(" (relative {:.1e})", (a - b).abs() / a.abs())
                    }
                    _ => String::new(),
                };
                problems.push(format!(
                    "{label} {name}.{stat}: {} expected {}{relative}",
                    g[stat], w[stat]
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(mean: f64, stddev: f64) -> Value {
        json!({"stations": [{"station": "S", "count": 2, "variables":
            {"t": {"count": 2, "mean": mean, "min": 1e9, "max": 1e9 + 1e-3, "stddev": stddev}}}],
            "temporal": [], "regions": []})
    }

    #[test]
    fn relative_tolerance_scales_means_by_magnitude_and_stddevs_by_themselves() {
        let exact = doc(1e9 + 5e-4, 7.071_067_811_865_476e-4);
        let rel = Tolerance::Relative(1e-12);
        assert_eq!(compare_documents(&exact, &exact, rel), Vec::<String>::new());
        // One ulp of the mean at 1e9 is within 1e-12 of the magnitude.
        let ulp = doc(1e9 + 5e-4 + 1.2e-7, 7.071_067_811_865_476e-4);
        assert!(compare_documents(&exact, &ulp, rel).is_empty());
        // A stddev off by 1e-9 of itself is not, though Loose accepts it.
        let off = doc(1e9 + 5e-4, 7.071_067_811_865_476e-4 * (1.0 + 1e-9));
        let problems = compare_documents(&exact, &off, rel);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("stations S t.stddev"), "{problems:?}");
        assert!(compare_documents(&exact, &off, Tolerance::Loose).is_empty());
    }

    #[test]
    fn key_sets_and_counts_are_exact() {
        let a = doc(1.0, 1.0);
        let mut b = a.clone();
        b["stations"][0]["station"] = "T".into();
        let problems = compare_documents(&a, &b, Tolerance::Loose);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("1 missing"), "{problems:?}");
        let mut c = a.clone();
        c["stations"][0]["variables"]["t"]["count"] = 3.into();
        assert_eq!(compare_documents(&a, &c, Tolerance::Loose).len(), 1);
        assert!(summarise("x", &[]).is_none());
    }
}
