//! Bounded-run integrity and visible checkpoint failures, through the binary: an interrupted
//! `--once` run writes nothing and exits 5; an unwritable `--output` fails before reading; the
//! output is whole JSON written atomically; a full disk (a real tmpfs) makes checkpoints fail
//! cleanly, `/healthz` degraded and the shutdown exit 4; a checkpoint directory whose every
//! file is damaged refuses to start unless `--fresh`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oceanflow_config::{CheckpointConfig, Config, ValidConfig};
use oceanflow_tests::fixtures::{batch, counts, rows, run_once, write_all_formats};
use oceanflow_tests::oracle::{compute, OracleSpec};
use oceanflow_tests::{
    free_port, http_get, http_get_response, oceanflow_bin, wait_until, ChildGuard,
};
use serde_json::Value;

/// Exit status of an interrupted bounded run.
const EXIT_INTERRUPTED: i32 = 5;
/// Exit status when the final checkpoint is not durable.
const EXIT_CHECKPOINT_NOT_DURABLE: i32 = 4;
/// Exit status of an error (cannot start, cannot write the output).
const EXIT_ERROR: i32 = 2;

/// The embedded default config with one synthetic source (`source` is its TOML body), written
/// to `dir/oceanflow.toml`; `edit` adjusts the rest.
fn synthetic_config(dir: &Path, source: &str, edit: impl FnOnce(&mut Config)) -> PathBuf {
    let mut config: Config = ValidConfig::embedded_default().into_config();
    config.sources = vec![toml::from_str(&format!(
        "kind = \"synthetic\"\nname = \"synthetic\"\n{source}"
    ))
    .expect("synthetic source parses")];
    edit(&mut config);
    let path = dir.join("oceanflow.toml");
    std::fs::write(&path, toml::to_string(&config).expect("config serialises")).unwrap();
    ValidConfig::from_toml(&std::fs::read_to_string(&path).unwrap()).expect("config is valid");
    path
}

/// `oceanflow run ARGS…` with its stderr in `log`; killed if the test fails first.
fn spawn(args: &[&OsStr], log: &Path) -> ChildGuard {
    ChildGuard::spawn(
        "oceanflow",
        Command::new(oceanflow_bin())
            .arg("run")
            .args(args)
            .env("OCEANFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap()),
    )
    .expect("oceanflow starts")
}

/// A bounded run: `oceanflow run --once --config CONFIG --output OUT EXTRA…`, as [`spawn`].
fn spawn_once(config: &Path, out: &Path, extra: &[&OsStr], log: &Path) -> ChildGuard {
    let mut args: Vec<&OsStr> = vec![
        "--once".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ];
    args.extend_from_slice(extra);
    spawn(&args, log)
}

fn exit_code(status: Option<ExitStatus>, log: &Path) -> i32 {
    let status = status.unwrap_or_else(|| panic!("did not exit; log:\n{}", read(log)));
    status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {status}; log:\n{}", read(log)))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The sum of a counter's samples (every label set) in Prometheus text.
fn counter(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

fn metrics(port: u16) -> Option<String> {
    http_get(&format!("http://127.0.0.1:{port}/metrics")).ok()
}

#[test]
fn an_interrupted_bounded_run_writes_nothing_and_exits_5() {
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        // 2M rows at 100,000 rows/s: reading takes 20 s, the signal comes within the first.
        let config = synthetic_config(
            dir.path(),
            "limit = 2000000\nrows_per_second = 100000\n",
            |_| {},
        );
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("out.json");
        let log = dir.path().join("stderr.log");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = spawn_once(&config, &out, &["--listen".as_ref(), listen.as_ref()], &log);
        let rows_before = wait_until(Duration::from_secs(60), || {
            let rows = counter(&metrics(port)?, "oceanflow_source_rows_total")?;
            (rows > 0.0).then_some(rows)
        })
        .unwrap_or_else(|| panic!("reading never started; log:\n{}", read(&log)));
        // Reading has started, the output is not written yet: only its temporary file exists.
        let waiting = entries(&out_dir);
        assert!(
            waiting.len() == 1
                && waiting[0].starts_with(".out.json.")
                && waiting[0].ends_with(".tmp"),
            "{waiting:?}"
        );
        child.signal(signal);
        let code = exit_code(child.wait_exit(Duration::from_secs(60)), &log);
        let log_text = read(&log);
        assert_eq!(code, EXIT_INTERRUPTED, "SIG{signal}; log:\n{log_text}");
        assert!(
            entries(&out_dir).is_empty(),
            "SIG{signal}: left {:?}",
            entries(&out_dir)
        );
        assert!(
            log_text.contains("interrupted") && log_text.contains("nothing was written to"),
            "{log_text}"
        );
        assert!(
            !log_text.contains("Wrote the final aggregates"),
            "{log_text}"
        );
        // How far it got is reported, and it is short of the whole input.
        let line = log_text
            .lines()
            .find(|l| l.contains("error: interrupted"))
            .unwrap();
        let rows: u64 = line
            .split("after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no row count in {line:?}"));
        assert!(
            rows as f64 >= rows_before && rows < 2_000_000,
            "SIG{signal}: {line}"
        );
    }
}

#[test]
fn an_unwritable_output_fails_before_any_row_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // 1M rows at 10,000 rows/s: a check after reading would take 100 s.
    let config = synthetic_config(
        dir.path(),
        "limit = 1000000\nrows_per_second = 10000\n",
        |_| {},
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    // Root may write anywhere, but nobody can create a file under a regular file.
    for out in [file.join("out.json"), dir.path().to_path_buf()] {
        let log = dir.path().join("stderr.log");
        let started = Instant::now();
        let mut child = spawn_once(&config, &out, &[], &log);
        let code = exit_code(child.wait_exit(Duration::from_secs(30)), &log);
        let log_text = read(&log);
        assert_eq!(code, EXIT_ERROR, "{}: {log_text}", out.display());
        assert!(
            log_text.contains(&format!("cannot write --output: {}", out.display())),
            "{log_text}"
        );
        assert!(!log_text.contains("Starting dataflow"), "{log_text}");
        assert!(started.elapsed() < Duration::from_secs(20), "{log_text}");
    }
    assert_eq!(
        entries(dir.path()),
        ["a-file", "oceanflow.toml", "stderr.log"]
    );
}

#[test]
fn the_output_is_whole_json_replacing_the_old_file_atomically() {
    let rows = rows(9_000, 71);
    let expected = compute(&OracleSpec::tutorial(&["species"]), &rows);
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let csv = write_all_formats(&inputs, &batch(&rows)).remove(0);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("out.json");
    std::fs::write(&out, b"{\"an old, unrelated document\": true}").unwrap();
    let doc = run_once(&csv, &out, &["--workers", "2"]);
    let problems = expected.diff(&doc);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(entries(&out_dir), ["out.json"]);
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_fails_checkpoints_cleanly_degrades_health_and_the_shutdown_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let tmpfs = match Tmpfs::mount(&checkpoints, "256k") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    // 2,000 stations: a checkpoint of their per-station aggregates far exceeds 256 KiB.
    let config = synthetic_config(
        dir.path(),
        "stations = 2000\nrows_per_second = 20000\n",
        |config| {
            config.pipeline.update_interval = Duration::from_millis(50);
            config.pipeline.checkpoint = Some(CheckpointConfig {
                interval: Duration::from_millis(200),
                ..CheckpointConfig::in_dir(checkpoints.clone())
            });
        },
    );
    let log = dir.path().join("stderr.log");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = spawn(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--listen".as_ref(),
            listen.as_ref(),
        ],
        &log,
    );
    let health = wait_until(Duration::from_secs(60), || {
        let failed = counter(
            &metrics(port)?,
            "oceanflow_checkpoints_total{outcome=\"failed\"}",
        )?;
        if failed < 1.0 {
            return None;
        }
        let response = http_get_response(&format!("http://127.0.0.1:{port}/healthz")).ok()?;
        (response.status == 503).then_some(response)
    })
    .unwrap_or_else(|| {
        panic!(
            "no failed checkpoint or no degraded health; log:\n{}",
            read(&log)
        )
    });
    let body: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("checkpoint") && reasons.contains("No space left on device"),
        "{body}"
    );
    assert_eq!(body["checkpoint"]["status"], "degraded", "{body}");

    child.signal("TERM");
    let code = exit_code(child.wait_exit(Duration::from_secs(60)), &log);
    let log_text = read(&log);
    assert_eq!(code, EXIT_CHECKPOINT_NOT_DURABLE, "{log_text}");
    assert!(
        log_text.contains("the final checkpoint is not durable"),
        "{log_text}"
    );
    let left = entries(&tmpfs.dir);
    assert!(
        left.iter().all(|name| !name.ends_with(".tmp")),
        "temporary files left: {left:?}"
    );
}

#[test]
fn a_directory_of_damaged_checkpoints_refuses_to_start_unless_fresh() {
    let rows = rows(6_000, 72);
    let dir = tempfile::tempdir().unwrap();
    let csv = write_all_formats(dir.path(), &batch(&rows)).remove(0);
    let checkpoints = dir.path().join("checkpoints");
    let run = |out: &Path, extra: &[&str]| {
        let log = dir.path().join("stderr.log");
        let mut args: Vec<&OsStr> = vec![
            "--once".as_ref(),
            "--input".as_ref(),
            csv.as_os_str(),
            "--checkpoint-dir".as_ref(),
            checkpoints.as_os_str(),
            "--output".as_ref(),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let code = exit_code(spawn(&args, &log).wait_exit(Duration::from_secs(120)), &log);
        (code, read(&log))
    };
    let first_out = dir.path().join("first.json");
    let (code, log) = run(&first_out, &[]);
    assert_eq!(code, 0, "{log}");
    let first: Value = serde_json::from_slice(&std::fs::read(&first_out).unwrap()).unwrap();

    let mut files: Vec<PathBuf> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ofck"))
        .collect();
    assert!(!files.is_empty());
    files.sort();
    for (i, file) in files.iter().enumerate() {
        let mut bytes = std::fs::read(file).unwrap();
        if i % 2 == 0 {
            bytes.truncate(bytes.len() / 2);
        } else {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x5a;
        }
        std::fs::write(file, &bytes).unwrap();
    }

    let refused_out = dir.path().join("refused.json");
    let (code, log) = run(&refused_out, &[]);
    assert_eq!(code, EXIT_ERROR, "{log}");
    assert!(log.contains("refuses to start from nothing"), "{log}");
    assert!(log.contains("--fresh"), "{log}");
    for file in &files {
        assert!(
            log.contains(&*file.to_string_lossy()),
            "{}: {log}",
            file.display()
        );
    }
    assert!(!refused_out.exists());

    let fresh_out = dir.path().join("fresh.json");
    let (code, log) = run(&fresh_out, &["--fresh"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Every checkpoint is damaged"), "{log}");
    for file in &files {
        assert!(
            log.contains(&*file.to_string_lossy()),
            "{}: {log}",
            file.display()
        );
        let mut aside = file.clone().into_os_string();
        aside.push(".damaged");
        assert!(Path::new(&aside).is_file(), "{} not kept", file.display());
    }
    let fresh: Value = serde_json::from_slice(&std::fs::read(&fresh_out).unwrap()).unwrap();
    assert_eq!(counts(&fresh), counts(&first));
}
