//! `kind = "kafka"` sources and the Kafka changelog sink.
//!
//! oceanflow reads Kafka as one consumer group: each timely worker runs one group member, so
//! the topic's partitions spread over the workers through the group protocol. Offsets are
//! committed only after the aggregates reflect them (never auto-committed), so the client
//! settings that would change that are reserved and rejected here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{humantime_serde_compat, ColumnMapping, SourceCheck};

/// A Kafka source: topics read as a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Name of the source (metrics label, dead-letter `source` field, partition ids
    /// `NAME#member-i`).
    pub name: String,
    /// Bootstrap brokers, `host:port[,host:port…]` (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// Topics to subscribe to. An entry starting with `^` is a regular expression over topic
    /// names (librdkafka's subscription syntax), e.g. `"^sensors\\..*"`.
    pub topics: Vec<String>,
    /// Consumer group; its committed offsets are where a restarted oceanflow resumes.
    pub group_id: String,
    /// Where a partition without a committed offset (and without a checkpointed position)
    /// starts. Default `earliest`.
    #[serde(default)]
    pub start: KafkaStart,
    /// How message payloads are encoded.
    pub format: KafkaFormat,
    /// With `format = "csv"`: the column names of the CSV lines (messages carry no header).
    #[serde(default)]
    pub csv_header: Vec<String>,
    /// Where the event time comes from. Default `payload` (the `mapping.time` field).
    #[serde(default)]
    pub event_time: KafkaEventTime,
    /// At most this many messages go into one batch. Default 10,000.
    #[serde(default = "default_max_batch_messages")]
    pub max_batch_messages: usize,
    /// At most this much wall time is spent collecting one batch, so a worker returns to
    /// stepping the dataflow promptly. Default 50 ms.
    #[serde(default = "default_poll_budget", with = "humantime_serde_compat")]
    pub poll_budget: Duration,
    /// Finish (instead of waiting for more messages) once every partition assigned to a member
    /// has been read up to the end offset observed when it was assigned. For `--once` runs and
    /// tests that drain a topic. Default `false`: the source runs until the process is stopped.
    #[serde(default)]
    pub stop_at_end: bool,
    /// Topic that receives every rejected message (the raw payload, with the reason, source
    /// topic, partition and offset in headers). Absent: rejected rows only go to the pipeline's
    /// dead-letter file and counters.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Extra librdkafka client settings passed through as is (`security.protocol`,
    /// `ssl.ca.location`, `sasl.mechanisms`, `sasl.username`, timeouts…). Values are not secret
    /// and may be logged; put secrets in `client_secrets`.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// Secret client settings (`sasl.password`, `ssl.key.password`…), each read from an
    /// environment variable or a file when the consumer is created; never logged.
    #[serde(default)]
    pub client_secrets: BTreeMap<String, SecretSource>,
    /// How the source's fields map onto the canonical schema.
    #[serde(default)]
    pub mapping: ColumnMapping,
}

/// Where a partition without a committed offset starts (librdkafka `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStart {
    /// The oldest retained message.
    #[default]
    Earliest,
    /// Only messages produced after the member joined.
    Latest,
}

impl KafkaStart {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaStart::Earliest => "earliest",
            KafkaStart::Latest => "latest",
        }
    }
}

/// Payload encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    /// One JSON object per message, or a JSON array of objects.
    Json,
    /// One or more CSV lines per message, without a header (see `csv_header`).
    Csv,
    /// An Arrow IPC stream (schema + record batches) per message: the high-volume path.
    ArrowIpc,
}

/// Where the event time of a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaEventTime {
    /// The payload field named by `mapping.time`.
    #[default]
    Payload,
    /// The Kafka message timestamp (create or log-append time), for every row of the message.
    KafkaTimestamp,
}

/// A secret read at run time: exactly one of `env` or `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Environment variable holding the value.
    #[serde(default)]
    pub env: Option<String>,
    /// File holding the value (trailing newline trimmed); relative to the config's directory.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// Publishes aggregate changes to a Kafka topic as a changelog (JSON messages keyed by the
/// aggregate key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaChangelogConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic receiving the changelog (it must exist, or the cluster must auto-create it).
    pub topic: String,
    /// Extra librdkafka producer settings passed through (not secret; see `client_secrets`).
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// Secret producer settings, read from the environment or a file.
    #[serde(default)]
    pub client_secrets: BTreeMap<String, SecretSource>,
}

/// Client settings oceanflow sets itself: passing them would break the delivery guarantee
/// (offsets are committed only after aggregation) or duplicate a dedicated key.
pub const RESERVED_CLIENT_KEYS: [(&str, &str); 7] = [
    ("bootstrap.servers", "`brokers`"),
    ("metadata.broker.list", "`brokers`"),
    ("group.id", "`group_id`"),
    ("auto.offset.reset", "`start`"),
    (
        "enable.auto.commit",
        "nothing: offsets are committed after aggregation",
    ),
    (
        "enable.auto.offset.store",
        "nothing: offsets are committed after aggregation",
    ),
    ("enable.partition.eof", "`stop_at_end`"),
];

/// Whether a client setting holds a secret that must come from `client_secrets`.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key == "sasl.oauthbearer.config"
        || key == "ssl.key.pem"
}

impl KafkaSourceConfig {
    /// Messages per batch unless the config says otherwise.
    pub const DEFAULT_MAX_BATCH_MESSAGES: usize = 10_000;

    /// Adds this source's problems to `check`.
    pub fn check(&self, check: &mut SourceCheck<'_>) {
        if self.brokers.trim().is_empty() {
            check.error(
                "brokers",
                "expected bootstrap brokers such as \"host:9092\"",
            );
        }
        if self.topics.is_empty() {
            check.error("topics", "expected at least one topic name or ^regex");
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if topic.trim().is_empty() {
                check.error(format!("topics[{i}]"), "expected a topic name or ^regex");
            }
        }
        if self.group_id.trim().is_empty() {
            check.error("group_id", "expected a consumer group id");
        }
        match self.format {
            KafkaFormat::Csv if self.csv_header.is_empty() => check.error(
                "csv_header",
                "expected the CSV column names (format = \"csv\" messages carry no header)",
            ),
            KafkaFormat::Json | KafkaFormat::ArrowIpc if !self.csv_header.is_empty() => check
                .error(
                    "csv_header",
                    "expected no csv_header unless format = \"csv\"",
                ),
            _ => {}
        }
        if self.max_batch_messages == 0 {
            check.error("max_batch_messages", "expected a positive message count");
        }
        if self.poll_budget.is_zero() {
            check.error(
                "poll_budget",
                "expected a positive duration such as \"50ms\"",
            );
        }
        if let Some(topic) = &self.dead_letter_topic {
            if topic.trim().is_empty() {
                check.error(
                    "dead_letter_topic",
                    "expected a topic name (or omit the key)",
                );
            } else if self.topics.contains(topic) {
                check.error(
                    "dead_letter_topic",
                    "expected a topic other than the ones read (bad messages would loop)",
                );
            }
        }
        client_problems(&self.client, &self.client_secrets, true, &mut |k, e| {
            check.error(k, e)
        });
        check.mapping("mapping", &self.mapping);
    }
}

impl KafkaChangelogConfig {
    /// Every problem of this table: the key relative to it and what was expected.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut add = |k: String, e: String| problems.push((k, e));
        if self.brokers.trim().is_empty() {
            add(
                "brokers".into(),
                "expected bootstrap brokers such as \"host:9092\"".into(),
            );
        }
        if self.topic.trim().is_empty() {
            add("topic".into(), "expected a topic name".into());
        }
        client_problems(&self.client, &self.client_secrets, false, &mut add);
        problems
    }
}

/// Checks passthrough settings: no reserved key, no inline secret, each secret from exactly
/// one place. `consumer` selects the reserved set (a producer only reserves the brokers).
fn client_problems(
    client: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretSource>,
    consumer: bool,
    add: &mut dyn FnMut(String, String),
) {
    for key in client.keys().chain(secrets.keys()) {
        let reserved = RESERVED_CLIENT_KEYS
            .iter()
            .filter(|(_, _)| consumer)
            .chain(RESERVED_CLIENT_KEYS.iter().take(2))
            .find(|(k, _)| k == key);
        if let Some((_, instead)) = reserved {
            let table = if client.contains_key(key) {
                "client"
            } else {
                "client_secrets"
            };
            add(
                format!("{table}.{key:?}"),
                format!("expected no {key:?}: oceanflow sets it (use {instead})"),
            );
        }
    }
    for key in client.keys() {
        if is_secret_key(key) {
            add(
                format!("client.{key:?}"),
                format!(
                    "expected the secret {key:?} under `client_secrets` (env = \"VAR\" or \
                     file = \"path\"), not inline"
                ),
            );
        }
        if secrets.contains_key(key) {
            add(
                format!("client.{key:?}"),
                "expected each setting in `client` or `client_secrets`, not both".into(),
            );
        }
    }
    for (key, secret) in secrets {
        let ok = match (&secret.env, &secret.file) {
            (Some(env), None) => !env.trim().is_empty(),
            (None, Some(file)) => !file.as_os_str().is_empty(),
            _ => false,
        };
        if !ok {
            add(
                format!("client_secrets.{key:?}"),
                "expected exactly one of env = \"VARIABLE\" or file = \"path\"".into(),
            );
        }
    }
}

fn default_max_batch_messages() -> usize {
    KafkaSourceConfig::DEFAULT_MAX_BATCH_MESSAGES
}

fn default_poll_budget() -> Duration {
    Duration::from_millis(50)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> KafkaSourceConfig {
        let text = format!(
            "name = \"k\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"obs\"]\n\
             group_id = \"g\"\nformat = \"json\"\n{extra}"
        );
        toml::from_str(&text).expect("valid kafka source toml")
    }

    fn problems(cfg: &KafkaSourceConfig) -> Vec<(String, String)> {
        let variables = vec!["temperature_c".to_string()];
        let mut check = SourceCheck {
            variables: &variables,
            categorical: &[],
            problems: Vec::new(),
        };
        cfg.check(&mut check);
        check.problems
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = parse("");
        assert_eq!(cfg.start, KafkaStart::Earliest);
        assert_eq!(cfg.event_time, KafkaEventTime::Payload);
        assert_eq!(cfg.poll_budget, Duration::from_millis(50));
        assert!(!cfg.stop_at_end);
        assert_eq!(problems(&cfg), vec![]);
    }

    #[test]
    fn each_problem_names_its_key() {
        let cfg = parse(
            "csv_header = [\"a\"]\nmax_batch_messages = 0\ndead_letter_topic = \"obs\"\n\
             [client]\n\"enable.auto.commit\" = \"true\"\n\"sasl.password\" = \"hunter2\"\n\
             [client_secrets]\n\"ssl.key.password\" = { env = \"A\", file = \"b\" }\n",
        );
        let keys: Vec<String> = problems(&cfg).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "csv_header",
                "max_batch_messages",
                "dead_letter_topic",
                "client.\"enable.auto.commit\"",
                "client.\"sasl.password\"",
                "client_secrets.\"ssl.key.password\"",
            ]
        );
    }

    #[test]
    fn csv_needs_a_header() {
        let mut cfg = parse("");
        cfg.format = KafkaFormat::Csv;
        assert_eq!(problems(&cfg)[0].0, "csv_header");
    }

    #[test]
    fn changelog_reserves_only_the_brokers() {
        let cfg: KafkaChangelogConfig = toml::from_str(
            "brokers = \"b:9092\"\ntopic = \"t\"\n[client]\n\"linger.ms\" = \"5\"\n\
             \"bootstrap.servers\" = \"x\"\n",
        )
        .expect("valid changelog toml");
        let keys: Vec<String> = cfg.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["client.\"bootstrap.servers\""]);
    }
}
