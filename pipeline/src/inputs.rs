//! `oceanflow run --input PATH`: the notebook replacement in one line. The given files replace
//! the config's sources (default column mapping: the tutorial's names), and every other text
//! column of the files (e.g. `species`) becomes a categorical field counted distinct per region
//! — unless the config lists its distinct fields explicitly.

use oceanflow_config::schema::{LATITUDE, LONGITUDE, STATION, TIME};
use oceanflow_config::{
    ColumnMapping, Config, ConfigErrors, FileFormat, FileSourceConfig, SourceConfig, ValidConfig,
};
use oceanflow_connectors::file::probe_string_columns;
use oceanflow_connectors::SourceError;

/// The canonical columns, which a discovered text column cannot become.
const CANONICAL: [&str; 4] = [TIME, STATION, LATITUDE, LONGITUDE];

/// Why `--input` could not be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// A file could not be probed.
    #[error("--input: {source}")]
    Probe {
        /// The path or glob.
        path: String,
        /// The cause.
        #[source]
        source: SourceError,
    },
    /// The resulting configuration is invalid.
    #[error("--input: {0}")]
    Config(#[from] ConfigErrors),
}

/// Replaces the sources of `base` with one file source per input path or glob, and checks the
/// result.
pub fn with_inputs(base: ValidConfig, inputs: &[String]) -> Result<ValidConfig, InputsError> {
    let mut config = base.into_config();
    replace_sources(&mut config, inputs, None)?;
    Ok(ValidConfig::try_from_config(config)?)
}

/// Replaces the sources of `config` (which may have none) with one file source per input path
/// or glob, read as `format` (else by each file's extension); nothing when `inputs` is empty.
pub fn replace_sources(
    config: &mut Config,
    inputs: &[String],
    format: Option<FileFormat>,
) -> Result<(), InputsError> {
    if inputs.is_empty() {
        return Ok(());
    }
    let mapping = ColumnMapping::default();
    let discover = config.aggregates.regional.distinct.is_none();
    config.sources = inputs
        .iter()
        .enumerate()
        .map(|(i, path)| {
            SourceConfig::File(FileSourceConfig {
                name: format!("input-{i}"),
                path: path.clone(),
                format,
                mapping: mapping.clone(),
                batch_rows: FileSourceConfig::DEFAULT_BATCH_ROWS,
            })
        })
        .collect();
    // Probed even when the distinct fields are given: a glob that matches nothing, or an
    // unknown format, fails now rather than after a run over nothing.
    for path in inputs {
        let columns = probe_string_columns(path, format).map_err(|source| InputsError::Probe {
            path: path.clone(),
            source,
        })?;
        if discover {
            for column in columns {
                let fixed = [
                    mapping.time.as_str(),
                    mapping.station.as_str(),
                    mapping.latitude.as_str(),
                    mapping.longitude.as_str(),
                ];
                if fixed.contains(&column.as_str())
                    || config.variables.contains(&column)
                    || config.categorical.contains(&column)
                {
                    continue;
                }
                if CANONICAL.contains(&column.as_str()) {
                    tracing::warn!(
                        input = %path,
                        %column,
                        "Text column has the name of a canonical field; it is not counted \
                         (rename it, or map it in a config's [sources.mapping])."
                    );
                    continue;
                }
                tracing::info!(%column, "Counting distinct values of text column per region.");
                config.categorical.push(column);
            }
        }
    }
    Ok(())
}
