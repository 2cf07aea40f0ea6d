//! librdkafka client settings: the dedicated keys, the passthrough `client` table and the
//! secrets read from the environment or a file.
//!
//! A [`ClientConfig`] holds secrets once built, so it is never logged (its `Debug` would print
//! them); errors name the setting and where its value was expected, never the value.

use std::collections::BTreeMap;
use std::path::Path;

use oceanflow_config::source::kafka::SecretSource;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

use crate::Error;

/// Forwards a librdkafka log line to `tracing` (target `librdkafka`), so broker connection
/// problems show up in oceanflow's log. Messages carry no secrets (librdkafka redacts them).
pub(crate) fn log(client: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, facility, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client, facility, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, facility, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client, facility, "{message}")
        }
    }
}

/// Forwards a librdkafka client error (e.g. all brokers down) to `tracing`; librdkafka keeps
/// retrying, so this is a warning.
pub(crate) fn error(client: &str, error: &rdkafka::error::KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", client, %error, "{reason}");
}

/// Builds a client config: `bootstrap.servers`, then the passthrough settings, then the secrets.
/// `context` names the client in errors (e.g. `source obs`).
pub(crate) fn client_config(
    context: &str,
    brokers: &str,
    client: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretSource>,
    base_dir: &Path,
) -> Result<ClientConfig, Error> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config.set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in client {
        config.set(key, value);
    }
    for (key, secret) in secrets {
        let value = read_secret(context, key, secret, base_dir)?;
        config.set(key, value);
    }
    Ok(config)
}

/// Reads one secret. The value never appears in an error.
fn read_secret(
    context: &str,
    key: &str,
    secret: &SecretSource,
    base_dir: &Path,
) -> Result<String, Error> {
    let err = |message: String| Error::Secret {
        context: context.to_string(),
        key: key.to_string(),
        message,
    };
    match (&secret.env, &secret.file) {
        (Some(var), None) => {
            std::env::var(var).map_err(|e| err(format!("environment variable {var}: {e}")))
        }
        (None, Some(file)) => {
            let path = base_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(format!("file {}: {e}", path.display())))?;
            Ok(text.trim_end_matches(['\r', '\n']).to_string())
        }
        _ => Err(err("expected exactly one of env or file".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_env_and_file_and_errors_hide_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("pw"), "s3cret\n").expect("write secret");
        let secret = SecretSource {
            env: None,
            file: Some("pw".into()),
        };
        assert_eq!(
            read_secret("source k", "sasl.password", &secret, dir.path()).expect("read"),
            "s3cret"
        );
        let missing = SecretSource {
            env: Some("OCEANFLOW_KAFKA_TEST_SURELY_UNSET".into()),
            file: None,
        };
        let message = read_secret("source k", "sasl.password", &missing, dir.path())
            .expect_err("unset variable")
            .to_string();
        assert!(
            message.contains("OCEANFLOW_KAFKA_TEST_SURELY_UNSET"),
            "{message}"
        );
        assert!(message.contains("sasl.password"), "{message}");
    }
}
