//! `kind = "odp"` sources: an Ocean Data Platform tabular dataset read over HTTP
//! (`POST /api/table/v2/sdk/select`, Arrow IPC pages with a continuation cursor).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{humantime_serde_compat, ColumnMapping, SourceCheck};

/// The public ODP API; tests and mirrors override it with `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.hubocean.earth";

/// An Ocean Data Platform tabular dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdpSourceConfig {
    /// Name of the source (metrics label, dead-letter `source` field).
    pub name: String,
    /// The dataset UUID (the table id of the tabular v2 API).
    pub dataset: String,
    /// API root. Default `https://api.hubocean.earth`; a trailing `/` is ignored.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// API key sent as `Authorization: ApiKey <key>`. When neither this nor `bearer_token` is
    /// set, the key comes from the `ODP_API_KEY` environment variable (so it need not be in
    /// the file).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// A bearer token (JWT) sent as `Authorization: Bearer <token>`, instead of an API key.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Filter expression of the selection (ODP's filter language), e.g.
    /// `footprintWKT within $area`. Absent: every row.
    #[serde(default)]
    pub filter: Option<String>,
    /// Bind variables of the filter (`$name`). Strings, integers, floats, booleans and TOML
    /// datetimes; sent typed the way the Python SDK sends them.
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// Projection: the columns to fetch. Absent: every column.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Server time budget of one page (the request's `timeout`); the client waits this plus a
    /// minute. Default 30 s.
    #[serde(default = "default_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Attempts per request before giving up on 429/502/503/504 and dropped connections.
    /// Default 8 (the Python SDK's read strategy).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, up to `max_backoff`. A `Retry-After` header
    /// overrides it. Default 1 s.
    #[serde(default = "default_initial_backoff", with = "humantime_serde_compat")]
    pub initial_backoff: Duration,
    /// Longest retry delay. Default 60 s.
    #[serde(default = "default_max_backoff", with = "humantime_serde_compat")]
    pub max_backoff: Duration,
    /// Optional WKT geometry column (e.g. `footprintWKT`) whose centroid is the position of
    /// rows without a latitude/longitude (or of every row, when the mapped latitude and
    /// longitude columns do not exist).
    #[serde(default)]
    pub geometry: Option<String>,
    /// Station id of rows whose mapped station column is absent or null (many ODP datasets,
    /// such as biota surveys, have no station).
    #[serde(default)]
    pub default_station: Option<String>,
    /// After the backfill, keep polling for new rows (the dataset followed like a feed).
    #[serde(default)]
    pub follow: Option<OdpFollowConfig>,
    /// How the dataset's columns map onto the canonical schema.
    #[serde(default)]
    pub mapping: ColumnMapping,
}

/// Following a growing dataset: after the backfill, select `(<filter>) AND <column> > $last`
/// every `interval`, where `$last` is the largest value of `column` delivered so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdpFollowConfig {
    /// A column whose values only grow as rows are appended (an ingestion time or event time).
    pub column: String,
    /// Time between polls once caught up. Default 60 s.
    #[serde(default = "default_follow_interval", with = "humantime_serde_compat")]
    pub interval: Duration,
}

/// A credential: kept out of `Debug` output so it never reaches logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl OdpSourceConfig {
    /// Adds this source's problems to `check`.
    pub fn check(&self, check: &mut SourceCheck<'_>) {
        check.mapping("mapping", &self.mapping);
        if !is_uuid(&self.dataset) {
            check.error(
                "dataset",
                format!(
                    "expected a dataset UUID such as \"1d801817-742b-4867-82cf-5597673524eb\", \
                     got {:?}",
                    self.dataset
                ),
            );
        }
        let url = self.base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 9 {
            check.error(
                "base_url",
                format!("expected an http:// or https:// URL, got {url:?}"),
            );
        }
        if self.api_key.is_some() && self.bearer_token.is_some() {
            check.error(
                "bearer_token",
                "expected either `api_key` or `bearer_token`, not both",
            );
        }
        for (key, secret) in [
            ("api_key", &self.api_key),
            ("bearer_token", &self.bearer_token),
        ] {
            if secret.as_ref().is_some_and(|s| s.0.trim().is_empty()) {
                check.error(
                    key,
                    "expected a non-empty credential (or leave the key out)",
                );
            }
        }
        if let Some(filter) = &self.filter {
            if filter.trim().is_empty() {
                check.error(
                    "filter",
                    "expected a filter expression (or leave the key out)",
                );
            }
        }
        for (name, value) in &self.vars {
            if !is_identifier(name) {
                check.error(
                    format!("vars.{name}"),
                    "expected a variable name of letters, digits and `_`",
                );
            }
            if !matches!(
                value,
                toml::Value::String(_)
                    | toml::Value::Integer(_)
                    | toml::Value::Float(_)
                    | toml::Value::Boolean(_)
                    | toml::Value::Datetime(_)
            ) {
                check.error(
                    format!("vars.{name}"),
                    format!(
                        "expected a string, integer, float, boolean or datetime, got a {}",
                        value.type_str()
                    ),
                );
            }
        }
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                check.error(
                    "columns",
                    "expected at least one column (or leave the key out)",
                );
            }
            for (i, column) in columns.iter().enumerate() {
                if column.trim().is_empty() {
                    check.error(format!("columns[{i}]"), "expected a column name");
                }
            }
        }
        if self.timeout.is_zero() {
            check.error("timeout", "expected a positive duration such as \"30s\"");
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            check.error(
                "max_attempts",
                format!("expected 1 to 100 attempts, got {}", self.max_attempts),
            );
        }
        if self.initial_backoff > self.max_backoff {
            check.error(
                "initial_backoff",
                "expected a delay no longer than `max_backoff`",
            );
        }
        if let Some(geometry) = &self.geometry {
            if geometry.trim().is_empty() {
                check.error(
                    "geometry",
                    "expected a WKT column name (or leave the key out)",
                );
            }
        }
        if let Some(station) = &self.default_station {
            if station.trim().is_empty() {
                check.error("default_station", "expected a non-empty station id");
            }
        }
        if let Some(follow) = &self.follow {
            if !is_identifier(&follow.column) {
                check.error(
                    "follow.column",
                    format!("expected a column name, got {:?}", follow.column),
                );
            }
            if follow.interval.is_zero() {
                check.error(
                    "follow.interval",
                    "expected a positive duration such as \"60s\"",
                );
            }
        }
    }
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A bare identifier of the filter language: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_follow_interval() -> Duration {
    Duration::from_secs(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> OdpSourceConfig {
        toml::from_str(text).expect("valid odp source")
    }

    fn problems(cfg: &OdpSourceConfig) -> Vec<(String, String)> {
        let variables = vec!["depth_m".to_string()];
        let categorical = vec!["species".to_string()];
        let mut check = SourceCheck {
            variables: &variables,
            categorical: &categorical,
            problems: Vec::new(),
        };
        cfg.check(&mut check);
        check.problems
    }

    #[test]
    fn a_minimal_source_gets_the_defaults_and_passes() {
        let cfg = source("name = \"biota\"\ndataset = \"1d801817-742b-4867-82cf-5597673524eb\"\n");
        assert_eq!(cfg.base_url, DEFAULT_BASE_URL);
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        assert_eq!(cfg.max_attempts, 8);
        assert!(problems(&cfg).is_empty(), "{:?}", problems(&cfg));
    }

    #[test]
    fn every_problem_names_its_key() {
        let cfg = source(
            r#"
name = "x"
dataset = "not-a-uuid"
base_url = "ftp://x"
api_key = "k"
bearer_token = ""
filter = " "
columns = []
timeout = "0s"
max_attempts = 0
initial_backoff = "2m"
max_backoff = "1m"
geometry = ""
default_station = ""
[vars]
area = [1, 2]
"bad name" = 1
[follow]
column = "1x"
interval = "0s"
"#,
        );
        let keys: Vec<String> = problems(&cfg).into_iter().map(|(k, _)| k).collect();
        for key in [
            "dataset",
            "base_url",
            "bearer_token",
            "filter",
            "vars.area",
            "vars.bad name",
            "columns",
            "timeout",
            "max_attempts",
            "initial_backoff",
            "geometry",
            "default_station",
            "follow.column",
            "follow.interval",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let cfg = source(
            "name = \"b\"\ndataset = \"1d801817-742b-4867-82cf-5597673524eb\"\napi_key = \"sk_live_123\"\n",
        );
        assert!(!format!("{cfg:?}").contains("sk_live_123"));
    }
}
