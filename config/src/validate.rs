//! Parsing and validation. Every problem is reported at once, each naming the key, the line
//! (when the config came from a file) and what was expected.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use crate::locate;
use crate::region::{parse_wkt_area, Region};
use crate::schema::{LATITUDE, LONGITUDE, STATION, TIME};
use crate::source::kafka::SecretSource;
use crate::source::SourceCheck;
use crate::{Config, OnDamaged, SourceConfig, DEFAULT_CONFIG_TOML};

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{key}: {expected}", at(*line, *column))]
pub struct ConfigError {
    /// Dotted path of the offending key, e.g. `sources[1].mapping.time`.
    pub key: String,
    /// 1-based line of the key in the file, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the key in the file, when known.
    pub column: Option<usize>,
    /// What was expected (and what was found).
    pub expected: String,
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: "),
        (Some(line), None) => format!("line {line}: "),
        _ => String::new(),
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A configuration that passed every check, with its regions parsed. The only form of
/// configuration the pipeline accepts.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    config: Config,
    regions: Vec<Region>,
    distinct_fields: Vec<String>,
}

impl ValidConfig {
    /// Parses and validates TOML text; errors carry line numbers.
    pub fn from_toml(text: &str) -> Result<ValidConfig, ConfigErrors> {
        Self::from_parsed(Self::parse_toml(text)?, text)
    }

    /// Parses TOML text without the checks, so that command-line flags can complete it (a
    /// checkpoint directory, the sources) before [`ValidConfig::from_parsed`] checks it.
    pub fn parse_toml(text: &str) -> Result<Config, ConfigErrors> {
        let parsed = locate::parse_all(text);
        let mut errors = parsed.errors;
        let Some((rest, left_out)) = parsed.rest else {
            errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
            return Err(ConfigErrors(errors));
        };
        if errors.is_empty() {
            return Ok(rest);
        }
        // Check what parsed too, so that every problem is reported at once; a key that was
        // left out (it had a problem) is not reported again through its default.
        if let Err(more) = Self::from_parsed(rest, text) {
            let within = |key: &str, path: &str| {
                // A table taken out of an array of tables renumbers the ones after it (and
                // may leave the array empty).
                let array = path
                    .strip_suffix(']')
                    .and_then(|p| p.rsplit_once('['))
                    .map(|(array, _)| array);
                key == path
                    || key.starts_with(&format!("{path}."))
                    || key.starts_with(&format!("{path}["))
                    || array.is_some_and(|a| key == a || key.starts_with(&format!("{a}[")))
            };
            errors.extend(
                more.0
                    .into_iter()
                    .filter(|e| !left_out.iter().any(|path| within(&e.key, path))),
            );
        }
        errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        Err(ConfigErrors(errors))
    }

    /// Validates a configuration parsed from `text` (and perhaps completed since); errors
    /// carry the line and column of their key in `text`.
    pub fn from_parsed(config: Config, text: &str) -> Result<ValidConfig, ConfigErrors> {
        let entries = text
            .parse::<toml_edit::ImDocument<String>>()
            .map(|doc| locate::entries(&doc))
            .unwrap_or_default();
        Self::check(config).map_err(|mut errors| {
            for e in &mut errors.0 {
                if let Some(entry) = locate::entry_of(&entries, &e.key) {
                    let (line, column) = locate::line_column(text, entry.key.start);
                    e.line = Some(line);
                    e.column = Some(column);
                }
            }
            errors
        })
    }

    /// Validates a configuration built in code (no line numbers).
    pub fn try_from_config(config: Config) -> Result<ValidConfig, ConfigErrors> {
        Self::check(config)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> ValidConfig {
        Self::from_toml(DEFAULT_CONFIG_TOML).expect("the embedded default config is valid")
    }

    /// The configuration as written.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Regions in config order; region ids in the operators are indices into this slice.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Categorical fields counted distinct per region, in config order.
    pub fn distinct_fields(&self) -> &[String] {
        &self.distinct_fields
    }

    /// Secrets that come from environment variables which are not set, each as `key: why`
    /// (for a bounded run to refuse to start rather than fail after it began).
    pub fn missing_secrets(&self) -> Vec<String> {
        let mut tables: Vec<(String, &std::collections::BTreeMap<String, SecretSource>)> = self
            .config
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, source)| match source {
                SourceConfig::Kafka(k) => Some((format!("sources[{i}]"), &k.client_secrets)),
                _ => None,
            })
            .collect();
        if let Some(changelog) = &self.config.export.changelog {
            tables.push(("export.changelog".into(), &changelog.client_secrets));
        }
        let mut missing = Vec::new();
        for (at, secrets) in tables {
            for (setting, secret) in secrets {
                let Some(var) = &secret.env else { continue };
                if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
                    missing.push(format!(
                        "{at}.client_secrets.{setting:?}: the environment variable {var} is not set"
                    ));
                }
            }
        }
        missing
    }

    /// Goes back to the plain configuration, e.g. to change it and validate again.
    pub fn into_config(self) -> Config {
        self.config
    }

    fn check(config: Config) -> Result<ValidConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let mut err = |key: String, expected: String| {
            errors.push(ConfigError {
                key,
                line: None,
                column: None,
                expected,
            })
        };

        let p = &config.pipeline;
        if p.workers == 0 || p.workers > 1024 {
            err(
                "pipeline.workers".into(),
                format!("expected 1 to 1024 worker threads, got {}", p.workers),
            );
        }
        if p.update_interval.is_zero() || p.update_interval > Duration::from_secs(3600) {
            err(
                "pipeline.update_interval".into(),
                "expected a duration from 1ms to 1h, such as \"250ms\"".into(),
            );
        }
        if p.idle_timeout.is_zero() {
            err(
                "pipeline.idle_timeout".into(),
                "expected a positive duration such as \"5m\"".into(),
            );
        }
        if let Some(c) = &p.checkpoint {
            if c.dir.as_os_str().is_empty() {
                err(
                    "pipeline.checkpoint.dir".into(),
                    "expected a directory path (here or with --checkpoint-dir)".into(),
                );
            }
            if c.interval < p.update_interval {
                err(
                    "pipeline.checkpoint.interval".into(),
                    format!(
                        "expected at least pipeline.update_interval ({}), got {}",
                        humantime::format_duration(p.update_interval),
                        humantime::format_duration(c.interval)
                    ),
                );
            }
            if c.keep == 0 {
                err(
                    "pipeline.checkpoint.keep".into(),
                    "expected at least 1 checkpoint to keep".into(),
                );
            }
            if let OnDamaged::Unrecognised(value) = &c.on_damaged {
                err(
                    "pipeline.checkpoint.on_damaged".into(),
                    format!("expected \"refuse\" or \"start_fresh\", got {value:?}"),
                );
            }
        }

        if let Some(changelog) = &config.export.changelog {
            for (key, expected) in changelog.problems() {
                err(format!("export.changelog.{key}"), expected);
            }
        }

        let reserved = [TIME, STATION, LATITUDE, LONGITUDE];
        let mut columns = HashSet::new();
        for (kind, names) in [
            ("variables", &config.variables),
            ("categorical", &config.categorical),
        ] {
            for (i, name) in names.iter().enumerate() {
                if name.trim().is_empty() {
                    err(format!("{kind}[{i}]"), "expected a non-empty name".into());
                } else if reserved.contains(&name.as_str()) {
                    err(
                        format!("{kind}[{i}]"),
                        format!("{name:?} is a fixed column of the observation schema; pick another name"),
                    );
                } else if !columns.insert(name.as_str()) {
                    err(
                        format!("{kind}[{i}]"),
                        format!("{name:?} is declared twice (names are unique across variables and categorical)"),
                    );
                }
            }
        }

        if config.sources.is_empty() {
            err(
                "sources".into(),
                "expected at least one [[sources]] entry (or run --input FILE)".into(),
            );
        }
        let mut source_names = HashSet::new();
        for (i, source) in config.sources.iter().enumerate() {
            let at = |k: &str| format!("sources[{i}].{k}");
            if source.name().trim().is_empty() {
                err(at("name"), "expected a non-empty name".into());
            } else if !source_names.insert(source.name()) {
                err(
                    at("name"),
                    format!("source name {:?} is used twice", source.name()),
                );
            }
            let mut check = SourceCheck {
                variables: &config.variables,
                categorical: &config.categorical,
                problems: Vec::new(),
            };
            match source {
                SourceConfig::File(f) => {
                    if f.path.trim().is_empty() {
                        check.error("path", "expected a file path or glob");
                    }
                    if f.batch_rows == 0 {
                        check.error("batch_rows", "expected a positive row count");
                    }
                    check.mapping("mapping", &f.mapping);
                }
                SourceConfig::Synthetic(s) => {
                    if s.stations == 0 || s.stations > 100_000 {
                        check.error(
                            "stations",
                            format!("expected 1 to 100000 stations, got {}", s.stations),
                        );
                    }
                    if chrono::DateTime::parse_from_rfc3339(&s.start).is_err() {
                        check.error(
                            "start",
                            format!(
                                "expected an RFC 3339 time such as \"2020-01-01T00:00:00Z\", got {:?}",
                                s.start
                            ),
                        );
                    }
                    if s.interval.is_zero() {
                        check.error("interval", "expected a positive duration");
                    }
                    if let Some(r) = s.rows_per_second {
                        if !(r.is_finite() && r > 0.0) {
                            check.error(
                                "rows_per_second",
                                format!("expected a positive number of rows per second (omit it for as fast as possible), got {r}"),
                            );
                        }
                    }
                    if s.batch_rows == 0 {
                        check.error("batch_rows", "expected a positive row count");
                    }
                }
                SourceConfig::Kafka(k) => k.check(&mut check),
                SourceConfig::Vessel(v) => v.check(&mut check),
                SourceConfig::Odp(o) => o.check(&mut check),
            }
            for (key, expected) in check.problems {
                err(at(&key), expected);
            }
        }

        let mut regions = Vec::new();
        let mut region_names = HashSet::new();
        for (i, r) in config.regions.iter().enumerate() {
            if r.name.trim().is_empty() {
                err(
                    format!("regions[{i}].name"),
                    "expected a non-empty name".into(),
                );
            } else if !region_names.insert(r.name.as_str()) {
                err(
                    format!("regions[{i}].name"),
                    format!("region name {:?} is used twice", r.name),
                );
            }
            match parse_wkt_area(&r.wkt) {
                Ok(geometry) => regions.push(Region {
                    name: r.name.clone(),
                    geometry,
                }),
                Err(why) => err(
                    format!("regions[{i}].wkt"),
                    format!("expected a WKT POLYGON or MULTIPOLYGON (lon lat order): {why}"),
                ),
            }
        }

        let distinct_fields = match &config.aggregates.regional.distinct {
            None => config.categorical.clone(),
            Some(fields) => {
                for (i, f) in fields.iter().enumerate() {
                    if !config.categorical.contains(f) {
                        err(
                            format!("aggregates.regional.distinct[{i}]"),
                            format!(
                                "{f:?} is not a categorical field (declared: {:?})",
                                config.categorical
                            ),
                        );
                    }
                }
                fields.clone()
            }
        };

        let temporal = &config.aggregates.temporal;
        for width in temporal.retention.keys() {
            if !temporal.buckets.contains(width) && !temporal.station_buckets.contains(width) {
                err(
                    format!("aggregates.temporal.retention.{}", width.as_str()),
                    format!(
                        "no {} bucket is configured in `buckets` or `station_buckets`",
                        width.as_str()
                    ),
                );
            }
        }

        if errors.is_empty() {
            Ok(ValidConfig {
                config,
                regions,
                distinct_fields,
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests;
