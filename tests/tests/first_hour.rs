//! The first hour of a new user: the README's quick start runs as written.
//!
//! `quick_start_commands_run_as_written` parses the first `sh` block under `## Quick start` and
//! runs each command against the already-built binary (`OCEANFLOW_BIN`): `cargo run ... --
//! ARGS` becomes `oceanflow ARGS` (a service gets a free `--listen` port in place of the
//! default), `curl -s 127.0.0.1:9187/PATH [| grep X] [| head -N]` goes through the test's HTTP
//! client, and the lines marked `#  >` under a command must appear in what it printed (`…`
//! ends a line's checked prefix). A command the test does not know fails it, so the README
//! cannot grow an untested command.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oceanflow_tests::{free_port, http_get, oceanflow_bin, wait_until, workspace_root, ChildGuard};

/// Commands of the quick start that are not run here, and why.
const NOT_RUN: [(&str, &str); 1] = [("./scripts/test.sh", "the test suite itself")];

/// The prefix of every quick-start command that runs the binary.
const CARGO_RUN: &str = "cargo run --release -p oceanflow-pipeline -- ";

/// The address the README's commands use; the test substitutes a free port.
const README_ADDR: &str = "127.0.0.1:9187";

/// One command of the quick start and the output lines it shows.
#[derive(Debug)]
struct Step {
    command: String,
    shown: Vec<String>,
}

fn quick_start_steps(readme: &str) -> Vec<Step> {
    let section = &readme[readme
        .find("## Quick start")
        .expect("a Quick start section")..];
    let block = &section[section.find("```sh\n").expect("an sh block") + 6..];
    let block = &block[..block.find("```").expect("the sh block ends")];
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        let line = line.trim_end();
        if let Some(shown) = line.strip_prefix("#  > ") {
            let step = steps.last_mut().expect("shown output follows a command");
            step.shown.push(shown.to_string());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            steps.push(Step {
                command: line.to_string(),
                shown: Vec::new(),
            });
        }
    }
    steps
}

/// Every shown line (up to a `…`) is contained in some line of `output`.
fn assert_shown(step: &Step, output: &str) {
    for shown in &step.shown {
        let expected = shown.split('…').next().unwrap_or_default().trim_end();
        assert!(
            output.lines().any(|line| line.contains(expected)),
            "README shows {shown:?} for `{}`, but it printed:\n{output}",
            step.command
        );
    }
}

/// `curl -s ADDR/PATH [| grep X] [| head -N]` against the service on `port`.
fn curl(step: &Step, port: u16) -> String {
    let mut stages = step.command.split(" | ");
    let url = stages
        .next()
        .and_then(|c| c.strip_prefix("curl -s "))
        .unwrap_or_else(|| panic!("not a curl command: {}", step.command));
    let url = url.replace(README_ADDR, &format!("127.0.0.1:{port}"));
    let body = http_get(&format!("http://{url}")).expect("the service answers");
    let mut lines: Vec<&str> = body.lines().collect();
    for stage in stages {
        if let Some(pattern) = stage.strip_prefix("grep ") {
            lines.retain(|l| l.contains(pattern));
        } else if let Some(n) = stage.strip_prefix("head -") {
            lines.truncate(n.parse().expect("head -N"));
        } else if stage != "head" {
            panic!("unknown pipeline stage {stage:?} in `{}`", step.command);
        }
    }
    assert!(!lines.is_empty(), "`{}` printed nothing", step.command);
    lines.join("\n")
}

/// Runs `oceanflow ARGS [> FILE]` to completion in `dir`, bounded, and returns its stdout.
fn run_to_completion(step: &Step, args: &str, dir: &Path) -> String {
    let (args, redirect) = match args.split_once(" > ") {
        Some((args, file)) => (args, Some(file.trim())),
        None => (args, None),
    };
    let mut child = ChildGuard::spawn(
        step.command.clone(),
        Command::new(oceanflow_bin())
            .args(args.split_whitespace())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let (status, stdout, stderr) = wait_and_read(&mut child, &step.command);
    assert!(status.success(), "`{}`: {status}\n{stderr}", step.command);
    if let Some(file) = redirect {
        std::fs::write(dir.join(file), &stdout).unwrap();
    }
    stdout
}

/// Starts the service `oceanflow run ...` on a free port and waits until it answers.
fn start_service(step: &Step, args: &str, dir: &Path, log: &Path) -> (ChildGuard, u16) {
    let port = free_port();
    let child = ChildGuard::spawn(
        step.command.clone(),
        Command::new(oceanflow_bin())
            .args(args.split_whitespace())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap()),
    )
    .unwrap();
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    wait_until(Duration::from_secs(30), || http_get(&healthz).ok())
        .unwrap_or_else(|| panic!("`{}` did not serve within 30 s", step.command));
    // The shown output includes rows: wait until the feed has produced some.
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    wait_until(Duration::from_secs(30), || {
        http_get(&metrics)
            .ok()
            .filter(|m| m.contains("oceanflow_station_observations_total{"))
    })
    .unwrap_or_else(|| panic!("`{}` aggregated nothing within 30 s", step.command));
    (child, port)
}

#[test]
fn quick_start_commands_run_as_written() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let steps = quick_start_steps(&readme);
    assert!(steps.len() >= 5, "quick start commands: {steps:#?}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("service.log");
    let mut service: Option<(ChildGuard, u16, usize)> = None;
    let mut covered = 0;
    for (i, step) in steps.iter().enumerate() {
        if NOT_RUN.iter().any(|(command, _)| *command == step.command) {
            continue;
        }
        covered += 1;
        if let Some(args) = step.command.strip_prefix(CARGO_RUN) {
            let is_service = args.split_whitespace().next() == Some("run")
                && !args.split_whitespace().any(|a| a == "--once");
            if is_service {
                let (child, port) = start_service(step, args, dir.path(), &log);
                service = Some((child, port, i));
            } else {
                let stdout = run_to_completion(step, args, dir.path());
                assert_shown(step, &stdout);
            }
        } else if step.command.starts_with("curl ") {
            let (_, port, _) = service
                .as_ref()
                .unwrap_or_else(|| panic!("`{}` needs the service first", step.command));
            let output = curl(step, *port);
            assert_shown(step, &output);
        } else {
            panic!(
                "the README's quick start has a command this test does not run: `{}`",
                step.command
            );
        }
    }
    assert!(covered >= 5, "only {covered} commands were run");
    let (mut child, port, at) = service.expect("the quick start runs the service");
    child.signal("TERM");
    let status = child
        .wait_exit(Duration::from_secs(30))
        .expect("the service exits within 30 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "the service exits 0 on SIGTERM");
    let logged = std::fs::read_to_string(&log)
        .unwrap()
        .replace(&format!("127.0.0.1:{port}"), README_ADDR);
    assert!(
        !logged.contains('\u{1b}'),
        "a log that is not a terminal has no colour codes:\n{logged}"
    );
    assert_shown(&steps[at], &logged);
}

/// `cargo build -p oceanflow-pipeline` (the quick start) must resolve every dependency with the
/// features `cargo build --workspace` gives it, or one of the two rebuilds most of the
/// dependency tree after the other (pipeline/Cargo.toml pins the features that differ).
#[test]
fn quick_start_build_resolves_like_the_workspace() {
    let features = |scope: &[&str]| -> std::collections::BTreeMap<String, String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "tree",
                "--offline",
                "--locked",
                "--prefix",
                "none",
                "-e",
                "normal,build",
            ])
            .args(["-f", "{p}|{f}"])
            .args(scope)
            .current_dir(workspace_root())
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (package, features) = l.trim_end_matches(" (*)").split_once('|')?;
                Some((package.to_string(), features.to_string()))
            })
            .collect()
    };
    let quick_start = features(&["-p", "oceanflow-pipeline"]);
    let workspace = features(&["--workspace"]);
    let differing: Vec<_> = quick_start
        .iter()
        .filter(|(package, f)| workspace.get(*package).is_some_and(|w| w != *f))
        .map(|(package, f)| format!("{package}: [{f}] vs workspace [{}]", workspace[package]))
        .collect();
    assert!(quick_start.len() > 100, "{quick_start:?}");
    assert!(
        differing.is_empty(),
        "features differ, so the quick start rebuilds after the workspace build: {differing:#?}"
    );
}

const CSV_HEADER: &str =
    "timestamp,station_id,latitude,longitude,temperature_c,salinity_psu,depth_m,dissolved_oxygen";

/// Three rows of two stations in the tutorial's columns.
fn tutorial_csv() -> String {
    format!(
        "{CSV_HEADER}\n2020-01-01T00:00:00Z,S1,60.0,5.0,8.5,35.0,10,7.0\n\
         2020-01-01T00:01:00Z,S1,60.0,5.0,8.7,35.1,10,7.1\n\
         2020-01-01T00:02:00Z,S2,65.0,10.0,9.0,35.2,25,7.2\n"
    )
}

/// Runs `oceanflow ARGS` to completion (bounded): exit code, stderr.
fn oceanflow(args: &[&str]) -> (Option<i32>, String) {
    finish(Command::new(oceanflow_bin()).args(args))
}

/// Runs `command` to completion (at most 60 s), logging warnings: exit code, stderr.
fn finish(command: &mut Command) -> (Option<i32>, String) {
    let name = format!("{command:?}");
    let mut child = ChildGuard::spawn(
        name.clone(),
        command
            .env("OCEANFLOW_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let (status, _, stderr) = wait_and_read(&mut child, &name);
    (status.code(), stderr)
}

/// Waits (60 s at most) for `child` to exit; its status and what its piped stdout and stderr
/// held (empty for a stream that is not piped).
fn wait_and_read(child: &mut ChildGuard, name: &str) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    let status = child
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("`{name}` did not finish within 60 s"));
    let process = child.child_mut();
    let mut stdout = String::new();
    if let Some(mut pipe) = process.stdout.take() {
        pipe.read_to_string(&mut stdout).unwrap();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = process.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    (status, stdout, stderr)
}

fn station_counts(out: &Path) -> Vec<(String, u64)> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    doc["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let station = s["station"].as_str().unwrap().to_string();
            (station, s["count"].as_u64().unwrap())
        })
        .collect()
}

/// `--checkpoint-dir` gives the `dir` a `[pipeline.checkpoint]` table leaves out, and
/// `--input` the sources of a config that has none.
#[test]
fn command_line_flags_complete_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("partial.toml");
    std::fs::write(
        &config,
        "[pipeline.checkpoint]\ninterval = \"1s\"\nkeep = 2\n",
    )
    .unwrap();
    let input = dir.path().join("obs.csv");
    std::fs::write(&input, tutorial_csv()).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let out = dir.path().join("out.json");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (config, input, checkpoints, out_arg) =
        (path(&config), path(&input), path(&checkpoints), path(&out));
    let run = [
        "run", "--config", &config, "--input", &input, "--once", "--output", &out_arg,
    ];

    let (code, stderr) = oceanflow(&[&run[..], &["--checkpoint-dir", &checkpoints]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(station_counts(&out), [("S1".into(), 2), ("S2".into(), 1)]);
    let written = std::fs::read_dir(&checkpoints).unwrap().count();
    assert!(written > 0, "the final checkpoint is in --checkpoint-dir");

    let (code, stderr) = oceanflow(&run);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "line 1, column 1: pipeline.checkpoint.dir: expected a directory path (here or with \
             --checkpoint-dir)"
        ),
        "{stderr}"
    );
}

/// `--input-format` reads files whatever their extension; without it an unknown extension
/// is an error naming the flag's values.
#[test]
fn input_format_reads_a_txt_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("observations.txt");
    std::fs::write(&input, tutorial_csv()).unwrap();
    let out = dir.path().join("out.json");
    let (input, out_arg) = (input.to_str().unwrap(), out.to_str().unwrap());
    let run = ["run", "--input", input, "--once", "--output", out_arg];

    let (code, stderr) = oceanflow(&[&run[..], &["--input-format", "csv"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(station_counts(&out), [("S1".into(), 2), ("S2".into(), 1)]);

    let (code, stderr) = oceanflow(&[&run[..], &["--input-format", "xlsx"]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "expected one of csv, parquet, arrow_stream, arrow_file, ndjson, got \"xlsx\""
        ),
        "{stderr}"
    );
}

/// `--aggregates` keeps only the families and groupings it names; a CSV text column named like
/// a canonical field (`station`) is named in a warning and not counted, instead of failing
/// with a config error about `categorical[0]`.
#[test]
fn aggregates_flag_chooses_families_and_groupings() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("obs.csv");
    let csv = tutorial_csv().replacen(CSV_HEADER, &format!("{CSV_HEADER},station"), 1);
    let csv: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("{l},x{i}\n")
            }
        })
        .collect();
    std::fs::write(&input, csv).unwrap();
    let out = dir.path().join("out.json");
    let (input, out_arg) = (input.to_str().unwrap(), out.to_str().unwrap());
    let run = [
        "run",
        "--input",
        input,
        "--once",
        "--output",
        out_arg,
        "--aggregates",
    ];

    let (code, stderr) = oceanflow(&[&run[..], &["station,year,month_of_year,regions"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Text column has the name of a canonical field")
            && stderr.contains("column=station"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let mut groupings: Vec<&str> = doc["temporal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["grouping"].as_str().unwrap())
        .collect();
    groupings.dedup();
    groupings.sort();
    groupings.dedup();
    assert_eq!(groupings, ["month_of_year", "year"]);
    assert_eq!(station_counts(&out), [("S1".into(), 2), ("S2".into(), 1)]);
    assert_eq!(doc["regions"].as_array().unwrap().len(), 3, "{doc}");

    let (code, stderr) = oceanflow(&[&run[..], &["station,minute"]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: --aggregates: unknown aggregate \"minute\"; expected some of: station, regions, \
         hour, day, month, year, station_hour, station_day, station_month, station_year, \
         month_of_year, day_of_week, hour_of_day"
    );
}

/// A `--input` glob that matches nothing fails at start (exit 2, one message), also when the
/// config names its distinct fields (so no file is read to discover them).
#[test]
fn an_input_glob_that_matches_nothing_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("distinct.toml");
    std::fs::write(&config, "[aggregates.regional]\ndistinct = []\n").unwrap();
    let glob = dir.path().join("none/*.csv");
    let glob = glob.to_str().unwrap();
    for extra in [&[][..], &["--config", config.to_str().unwrap()][..]] {
        let (code, stderr) = oceanflow(&[&["run", "--input", glob, "--once"][..], extra].concat());
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("error: --input: source {glob}: \"{glob}\" matches no file")
        );
    }
}

/// A secret from an environment variable that is not set stops a bounded run at start (exit
/// 2, naming the key and the variable), before any connection is tried.
#[test]
fn a_missing_secret_fails_a_bounded_run_at_start() {
    let example = workspace_root().join("config/examples/kafka.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let commented = "# \"sasl.password\" = { env = \"OCEANFLOW_KAFKA_PASSWORD\" }";
    assert!(text.contains(commented), "the example documents the secret");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kafka.toml");
    std::fs::write(&config, text.replace(commented, &commented[2..])).unwrap();
    let (code, stderr) = finish(
        Command::new(oceanflow_bin())
            .args(["run", "--once", "--config", config.to_str().unwrap()])
            .env_remove("OCEANFLOW_KAFKA_PASSWORD"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: cannot start: sources[0].client_secrets.\"sasl.password\": the environment \
         variable OCEANFLOW_KAFKA_PASSWORD is not set"
    );
}

/// Empty and header-only inputs are not an error, but a bounded run over them says so.
#[test]
fn empty_and_header_only_inputs_give_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    for (name, content) in [
        ("empty.csv", String::new()),
        ("header.csv", format!("{CSV_HEADER}\n")),
    ] {
        let input = dir.path().join(name);
        std::fs::write(&input, content).unwrap();
        let (code, stderr) = oceanflow(&[
            "run",
            "--input",
            input.to_str().unwrap(),
            "--once",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert!(
            stderr.contains(
                "No rows were read in this run: the inputs are empty or header-only (or a \
                 restored checkpoint already held them all)."
            ),
            "{name}: {stderr}"
        );
        assert_eq!(station_counts(&out), [], "{name}");
    }
}
