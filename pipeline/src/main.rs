//! The `oceanflow` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use oceanflow_config::{
    CheckpointConfig, DeadLetterConfig, SourceConfig, ValidConfig, DEFAULT_CONFIG_TOML,
};
use oceanflow_pipeline::{inputs, run, write_output, RunOptions};

/// Live, incrementally maintained aggregates over oceanographic observations.
#[derive(Debug, Parser)]
#[command(name = "oceanflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline (the embedded default config without --config).
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
    /// Stop when every source is exhausted and the aggregates are final.
    #[arg(long)]
    once: bool,
    /// With --once: write the final aggregates as JSON to this file.
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
        .init();
    match main_inner() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
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
                Ok(ExitCode::from(1))
            }
        },
        Command::Run(args) => run_command(args),
    }
}

fn load(path: &PathBuf) -> Result<Result<ValidConfig, oceanflow_config::ConfigErrors>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(ValidConfig::from_toml(&text))
}

fn run_command(args: RunArgs) -> Result<ExitCode> {
    let base = match &args.config {
        Some(path) => match load(path)? {
            Ok(valid) => valid,
            Err(errors) => {
                eprint!("{}: {errors}", path.display());
                return Ok(ExitCode::from(1));
            }
        },
        None => ValidConfig::embedded_default(),
    };
    let valid = inputs::with_inputs(base, &args.inputs)?;
    let mut config = valid.into_config();
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
    let valid = ValidConfig::try_from_config(config)?;
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
    if let Some(path) = &args.output {
        write_output(path, &report.snapshot)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(path = %path.display(), "Wrote the final aggregates.");
    }
    if report.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &report.failures {
            eprintln!("failed: {failure}");
        }
        eprintln!(
            "error: {} partition(s) failed; the aggregates cover the rest",
            report.failures.len()
        );
        Ok(ExitCode::from(3))
    }
}
