//! `kind = "kafka"` sources.

use serde::{Deserialize, Serialize};

use super::{ColumnMapping, SourceCheck};

/// A kafka source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Name of the source (metrics label, dead-letter `source` field).
    pub name: String,
    /// How the source's fields map onto the canonical schema.
    #[serde(default)]
    pub mapping: ColumnMapping,
}

impl KafkaSourceConfig {
    /// Adds this source's problems to `check`.
    pub fn check(&self, check: &mut SourceCheck<'_>) {
        check.mapping("mapping", &self.mapping);
    }
}
