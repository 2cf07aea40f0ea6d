//! The `oceanflow` command line.
//!
//! Exit status: see [`EXIT_STATUS`] (also in `--help` and the README).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use oceanflow_config::{
    CheckpointConfig, DeadLetterConfig, FileFormat, OnDamaged, SourceConfig, ValidConfig,
    DEFAULT_CONFIG_TOML,
};
use oceanflow_pipeline::checkpoint::FinalCheckpoint;
use oceanflow_pipeline::output_file::OutputFile;
use oceanflow_pipeline::{inputs, run, RunOptions, RunReport};

/// Invalid config.
const EXIT_INVALID_CONFIG: u8 = 1;
/// An error: cannot start (an unwritable `--output`, checkpoints that cannot be restored, ...)
/// or cannot write `--output`.
const EXIT_ERROR: u8 = 2;
/// Some partitions failed; the aggregates cover the rest.
const EXIT_PARTITIONS_FAILED: u8 = 3;
/// Checkpoints are on and the final one is not durable.
const EXIT_CHECKPOINT_NOT_DURABLE: u8 = 4;
/// A bounded run was interrupted; nothing was written to `--output`.
const EXIT_INTERRUPTED: u8 = 5;

/// The exit codes, for `--help`.
const EXIT_STATUS: &str = "Exit status: 0 success; 1 invalid config; 2 an error: cannot start \
(an unwritable --output, a checkpoint directory that cannot be restored, e.g. every file \
damaged, an --input that matches no file, with --once a secret whose environment variable is \
not set) or cannot write --output; 3 some partitions failed (the aggregates cover the rest); \
4 checkpoints are on and the final checkpoint is not durable (a restart resumes from the \
previous one); 5 a --once run was interrupted by SIGINT/SIGTERM before its sources were \
exhausted (nothing is written to --output). When several apply: 5 or 2 (no output), then 4, \
then 3.";

/// Live, incrementally maintained aggregates over oceanographic observations.
#[derive(Debug, Parser)]
#[command(name = "oceanflow", version, about, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline (the embedded default config without --config).
    #[command(after_help = EXIT_STATUS)]
    Run(RunArgs),
    /// Check a config file and report every problem with its key and line.
    Validate {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the embedded default config, a starting point for your own.
    Config,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Config file (TOML); without it the embedded default runs.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A file or glob with the tutorial's columns; replaces the config's sources. Repeatable.
    #[arg(long = "input", value_name = "PATH")]
    inputs: Vec<String>,
    /// The format of every --input file (csv, parquet, arrow_stream, arrow_file, ndjson);
    /// default: from each file's extension.
    #[arg(long, value_name = "FORMAT", requires = "inputs")]
    input_format: Option<FileFormat>,
    /// Only these aggregates, comma-separated (replaces [aggregates]' families and groupings):
    /// station, regions, hour, day, month, year (over all stations), station_hour,
    /// station_day, station_month, station_year (per station), month_of_year, day_of_week,
    /// hour_of_day. E.g. `station,year,month_of_year,hour_of_day,regions`.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    aggregates: Vec<String>,
    /// Stop when every source is exhausted and the aggregates are final.
    #[arg(long)]
    once: bool,
    /// With --once: write the final aggregates as JSON to this file. Checked writable before
    /// reading starts; written atomically (a temporary file next to it, synced, renamed over
    /// it); never written when the run is interrupted.
    #[arg(long, requires = "once")]
    output: Option<PathBuf>,
    /// Timely worker threads (overrides pipeline.workers); results do not depend on it.
    #[arg(long)]
    workers: Option<usize>,
    /// Address for /metrics and the API (overrides export.listen; default 127.0.0.1:9187).
    /// With --once the listener only starts when this is given.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Write rejected rows to this NDJSON file (overrides pipeline.dead_letter).
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// Checkpoint into this directory and restore from its newest checkpoint at start
    /// (overrides pipeline.checkpoint.dir; interval and retention from the config or their
    /// defaults).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// When the checkpoint directory holds checkpoint files and every one is damaged, begin
    /// from nothing (the files are kept as *.damaged) instead of refusing to start (sets
    /// pipeline.checkpoint.on_damaged = "start_fresh"). A loadable checkpoint is still
    /// restored.
    #[arg(long)]
    fresh: bool,
    /// Directory holding the log files of every vessel source replaying logs (overrides
    /// sources[*].replay_dir; default the config file's directory).
    #[arg(long, value_name = "DIR")]
    replay_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OCEANFLOW_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match main_inner() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn main_inner() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Config => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config } => match load(&config)? {
            Ok(_) => {
                println!("{}: valid", config.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprint!("{}: {errors}", config.display());
                Ok(ExitCode::from(EXIT_INVALID_CONFIG))
            }
        },
        Command::Run(args) => run_command(args),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn load(path: &Path) -> Result<Result<ValidConfig, oceanflow_config::ConfigErrors>> {
    Ok(ValidConfig::from_toml(&read(path)?))
}

fn run_command(args: RunArgs) -> Result<ExitCode> {
    let (text, origin) = match &args.config {
        Some(path) => (read(path)?, path.display().to_string()),
        None => (
            DEFAULT_CONFIG_TOML.to_string(),
            "embedded default".to_string(),
        ),
    };
    // Parsed first and checked only once the flags have completed it: `--checkpoint-dir`
    // gives `[pipeline.checkpoint] dir`, `--input` the sources.
    let mut config = match ValidConfig::parse_toml(&text) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{origin}: {errors}");
            return Ok(ExitCode::from(EXIT_INVALID_CONFIG));
        }
    };
    if !args.aggregates.is_empty() {
        config
            .aggregates
            .select(&args.aggregates)
            .map_err(|why| anyhow::anyhow!("--aggregates: {why}"))?;
    }
    inputs::replace_sources(&mut config, &args.inputs, args.input_format)?;
    if let Some(workers) = args.workers {
        config.pipeline.workers = workers;
    }
    if let Some(path) = args.dead_letter {
        config.pipeline.dead_letter = Some(DeadLetterConfig { path });
    }
    if let Some(dir) = &args.replay_dir {
        for source in &mut config.sources {
            if let SourceConfig::Vessel(vessel) = source {
                vessel.replay_dir = Some(dir.display().to_string());
            }
        }
    }
    if let Some(dir) = args.checkpoint_dir {
        match &mut config.pipeline.checkpoint {
            Some(checkpoint) => checkpoint.dir = dir,
            None => config.pipeline.checkpoint = Some(CheckpointConfig::in_dir(dir)),
        }
    }
    if args.fresh {
        match &mut config.pipeline.checkpoint {
            Some(checkpoint) => checkpoint.on_damaged = OnDamaged::StartFresh,
            None => tracing::warn!("--fresh has no effect: checkpoints are off."),
        }
    }
    let valid = match ValidConfig::from_parsed(config, &text) {
        Ok(valid) => valid,
        Err(errors) => {
            eprint!("{origin}: {errors}");
            return Ok(ExitCode::from(EXIT_INVALID_CONFIG));
        }
    };
    // A bounded run that cannot get its secrets would only fail later, with a partial result.
    let missing = valid.missing_secrets();
    if !missing.is_empty() {
        for problem in &missing {
            if args.once {
                eprintln!("error: cannot start: {problem}");
            } else {
                tracing::error!("{problem}; the source will fail when it starts.");
            }
        }
        if args.once {
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    }
    // Before any row is read: an unwritable path fails now, not after the whole run.
    let output = match &args.output {
        Some(path) => Some(OutputFile::create(path).context("cannot write --output")?),
        None => None,
    };
    let options = RunOptions {
        once: args.once,
        listen: args.listen,
        serve: !args.once || args.listen.is_some(),
        base_dir: args
            .config
            .as_deref()
            .and_then(|p| p.parent())
            .map(PathBuf::from),
    };
    let report = run(valid, options, None)?;
    Ok(finish(&report, args.once, output))
}

/// Writes the output of a completed bounded run, reports what went wrong, and picks the exit
/// status ([`EXIT_STATUS`] says which wins when several apply).
fn finish(report: &RunReport, once: bool, output: Option<OutputFile>) -> ExitCode {
    let mut code = 0;
    if !report.failures.is_empty() {
        for failure in &report.failures {
            eprintln!("failed: {failure}");
        }
        eprintln!(
            "error: {} partition(s) failed; the aggregates cover the rest",
            report.failures.len()
        );
        code = EXIT_PARTITIONS_FAILED;
    }
    if let Some(FinalCheckpoint::NotDurable { reason }) = &report.final_checkpoint {
        eprintln!(
            "error: the final checkpoint is not durable ({reason}); a restart resumes from the \
             previous durable checkpoint"
        );
        code = EXIT_CHECKPOINT_NOT_DURABLE;
    }
    let progress = report.progress;
    if once && !report.interrupted && progress.rows_aggregated == 0 && progress.rows_rejected == 0 {
        tracing::warn!(
            "No rows were read in this run: the inputs are empty or header-only (or a restored \
             checkpoint already held them all)."
        );
    }
    if once && report.interrupted {
        // `output` is dropped unwritten: its temporary file goes with it.
        let output = output.map_or(String::new(), |o| {
            format!("; nothing was written to {}", o.target().display())
        });
        eprintln!(
            "error: interrupted: the run stopped after {} rows aggregated, {} rejected and {} \
             partition(s) read to the end, before its sources were exhausted{output}",
            progress.rows_aggregated, progress.rows_rejected, progress.partitions_finished
        );
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    if let Some(output) = output {
        let target = output.target().to_path_buf();
        match output.commit(&report.snapshot) {
            Ok(()) => tracing::info!(
                path = %target.display(),
                rows_aggregated = progress.rows_aggregated,
                "Wrote the final aggregates."
            ),
            Err(error) => {
                let error = anyhow::Error::from(error).context("writing --output");
                eprintln!("error: {}", describe(&error));
                return ExitCode::from(EXIT_ERROR);
            }
        }
    }
    ExitCode::from(code)
}

/// An error and its causes, `outer: inner: ...`, leaving out a cause whose text the message
/// before it already includes (many errors show their source in their own message).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}
