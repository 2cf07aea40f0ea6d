//! Replay of the NBP1406 sample logs through the vessel connector: sentence counts equal a
//! plain count of the files, thermosalinograph statistics equal a batch computation, the P-code
//! GPS week rollover is flagged, TSG records carry Seapath positions, a checkpointed position
//! resumes exactly, and corrupted input is counted and dead-lettered with nothing else lost.

mod common;

use std::collections::BTreeMap;

use common::*;
use oceanflow_connectors::RejectReason;

fn nbp1406(name: &str, extra: &str) -> oceanflow_config::VesselSourceConfig {
    config(&format!(
        "name = \"{name}\"\nposition_device = \"s330\"\n{extra}\n{}",
        nbp1406_devices(&data_dir())
    ))
}

fn read_lines(file: &str) -> Vec<String> {
    std::fs::read_to_string(data_dir().join(file))
        .expect("sample log")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The sentence label of a payload, by plain string handling.
fn plain_label(payload: &str) -> String {
    match payload.strip_prefix('$') {
        None => "instrument".into(),
        Some(rest) => {
            let mut fields = rest.split(['*', ',']);
            let address = fields.next().unwrap_or_default();
            if address.starts_with('P') {
                format!("{address}{}", fields.next().unwrap_or_default())
            } else {
                address[2..].to_string()
            }
        }
    }
}

#[test]
fn sentence_counts_equal_a_plain_count_of_the_files() {
    let cfg = nbp1406("count", "");
    let ctx = context();
    let batches = read_all(open(&cfg, &ctx, None).as_mut(), None);
    assert!(
        batches.iter().all(|b| b.rejected.is_empty()),
        "the sample is clean"
    );
    for (device, file) in [
        ("s330", "NBP1406_s330-2014-08-01"),
        ("pcod", "NBP1406_PCOD-2014-08-01"),
        ("gyr1", "NBP1406_gyr1-2014-08-01"),
        ("tsg1", "NBP1406_tsg1-2014-08-01"),
        ("rtmp", "NBP1406_rtmp-2014-08-01"),
        ("mbdp", "NBP1406_mbdp-2014-08-01"),
    ] {
        let lines = read_lines(file);
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for line in &lines {
            *expected
                .entry(plain_label(split_log_line(line).1))
                .or_default() += 1;
        }
        let labels = [("source", "count"), ("device", device)];
        assert_eq!(
            metric(&ctx.registry, "oceanflow_vessel_lines_total", &labels),
            lines.len() as f64,
            "{device}"
        );
        for (label, n) in &expected {
            let got = metric(
                &ctx.registry,
                "oceanflow_vessel_sentences_total",
                &[("source", "count"), ("device", device), ("sentence", label)],
            );
            assert_eq!(got, *n as f64, "{device} {label}");
        }
        let parse_errors: f64 = ["bad_checksum", "bad_field", "too_few_fields", "no_start"]
            .iter()
            .map(|r| {
                metric(
                    &ctx.registry,
                    "oceanflow_vessel_parse_errors_total",
                    &[("source", "count"), ("device", device), ("reason", r)],
                )
            })
            .sum();
        assert_eq!(parse_errors, 0.0, "{device}");
        let last_line = lines.last().unwrap();
        assert_eq!(
            metric(
                &ctx.registry,
                "oceanflow_vessel_last_seen_timestamp_seconds",
                &labels
            ),
            split_log_line(last_line).0 as f64 / 1e6,
            "{device}"
        );
    }
    // Rows: one per mapped sentence or instrument line.
    let rows = rows(&batches);
    let per_station = |s: &str| rows.iter().filter(|r| r.station == s).count();
    assert_eq!(per_station("s330"), 625 + 625, "RMC + HDT");
    assert_eq!(per_station("pcod"), 1000, "RMC");
    assert_eq!(per_station("tsg1"), 5000);
    assert_eq!(per_station("mbdp"), 5000);
}

#[test]
fn thermosalinograph_statistics_equal_a_batch_computation() {
    let cfg = nbp1406("tsg", "");
    let rows = rows(&read_all(open(&cfg, &context(), None).as_mut(), None));
    let tsg: Vec<&Row> = rows.iter().filter(|r| r.station == "tsg1").collect();
    let lines = read_lines("NBP1406_tsg1-2014-08-01");
    assert_eq!(tsg.len(), lines.len());
    for (i, name) in VARIABLES[..4].iter().enumerate() {
        let expected: Vec<f64> = lines
            .iter()
            .map(|l| {
                split_log_line(l)
                    .1
                    .split(',')
                    .nth(i)
                    .unwrap()
                    .trim()
                    .parse::<f64>()
                    .unwrap()
            })
            .collect();
        let got: Vec<f64> = tsg.iter().map(|r| r.var(name).unwrap()).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
        let min = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
        assert_eq!(got, expected, "{name}: every value, in order");
        assert!((mean(&got) - mean(&expected)).abs() < 1e-9, "{name}");
        assert_eq!((min(&got), max(&got)), (min(&expected), max(&expected)));
    }
    // Reception time is the event time of instrument lines.
    let times: Vec<i64> = lines.iter().map(|l| split_log_line(l).0).collect();
    assert_eq!(tsg.iter().map(|r| r.time_us).collect::<Vec<_>>(), times);
}

#[test]
fn pcod_week_rollover_is_flagged_and_reception_time_used() {
    let cfg = nbp1406("pcod", "");
    let ctx = context();
    let rows = rows(&read_all(open(&cfg, &ctx, None).as_mut(), None));
    let labels = |fault| [("source", "pcod"), ("device", "pcod"), ("fault", fault)];
    // Every ZDA and RMC carries a 1994 date; GGA/GLL times of day are plausible.
    assert_eq!(
        metric(
            &ctx.registry,
            "oceanflow_vessel_clock_faults_total",
            &labels("week_rollover")
        ),
        2000.0
    );
    assert_eq!(
        metric(
            &ctx.registry,
            "oceanflow_vessel_clock_faults_total",
            &labels("offset")
        ),
        0.0
    );
    let s330_faults = metric(
        &ctx.registry,
        "oceanflow_vessel_clock_faults_total",
        &[
            ("source", "pcod"),
            ("device", "s330"),
            ("fault", "week_rollover"),
        ],
    );
    assert_eq!(s330_faults, 0.0, "the Seapath clock is sane");
    let rmc_times: Vec<i64> = read_lines("NBP1406_PCOD-2014-08-01")
        .iter()
        .map(|l| split_log_line(l))
        .filter(|(_, p)| p.starts_with("$GPRMC"))
        .map(|(t, _)| t)
        .collect();
    let pcod: Vec<i64> = rows
        .iter()
        .filter(|r| r.station == "pcod")
        .map(|r| r.time_us)
        .collect();
    assert_eq!(
        pcod, rmc_times,
        "filed under the 2014 reception time, not 1994"
    );
    // The offset gauge shows the instrument clock's error (last sentence: a 1994 RMC).
    let offset = metric(
        &ctx.registry,
        "oceanflow_vessel_clock_offset_seconds",
        &[("source", "pcod"), ("device", "pcod")],
    );
    assert!(
        (offset + 1024.0 * 7.0 * 86_400.0).abs() < 86_400.0 * 2.0,
        "{offset}"
    );
}

fn ddmm(value: &str, hemisphere: &str) -> f64 {
    let v: f64 = value.parse().unwrap();
    let d = (v / 100.0).trunc();
    let deg = d + (v - d * 100.0) / 60.0;
    if hemisphere == "S" || hemisphere == "W" {
        -deg
    } else {
        deg
    }
}

#[test]
fn tsg_records_carry_positions_from_the_seapath_feed() {
    let cfg = nbp1406("join", "");
    let ctx = context();
    let rows = rows(&read_all(open(&cfg, &ctx, None).as_mut(), None));
    // The fixes, by plain string handling: GGA (quality > 0) and RMC (status A).
    let mut fixes: Vec<(i64, f64, f64)> = Vec::new();
    for line in read_lines("NBP1406_s330-2014-08-01") {
        let (t, payload) = split_log_line(&line);
        let f: Vec<&str> = payload.split(['*', ',']).collect();
        match f[0] {
            "$INGGA" if f[6] != "0" => fixes.push((t, ddmm(f[2], f[3]), ddmm(f[4], f[5]))),
            "$INRMC" if f[2] == "A" => fixes.push((t, ddmm(f[3], f[4]), ddmm(f[5], f[6]))),
            _ => {}
        }
    }
    let tsg: Vec<&Row> = rows.iter().filter(|r| r.station == "tsg1").collect();
    let mut positioned = 0;
    for r in &tsg {
        let expected = fixes
            .iter()
            .rev()
            .find(|(t, _, _)| *t <= r.time_us)
            .filter(|(t, _, _)| r.time_us - t <= 5_000_000)
            .map(|(_, lat, lon)| (*lat, *lon));
        let got = r.lat.zip(r.lon);
        match (got, expected) {
            (Some((a, b)), Some((c, d))) => {
                assert!((a - c).abs() < 1e-9 && (b - d).abs() < 1e-9, "{r:?}");
                positioned += 1;
            }
            (None, None) => {}
            other => panic!("{r:?}: {other:?}"),
        }
    }
    // The Seapath log covers the first ten minutes: about 300 TSG records at 0.5 Hz.
    assert!((300..=320).contains(&positioned), "{positioned}");
    assert_eq!(
        metric(
            &ctx.registry,
            "oceanflow_vessel_unpositioned_total",
            &[("source", "join"), ("device", "tsg1")]
        ),
        (tsg.len() - positioned) as f64,
        "records without a fresh fix are counted, not dropped"
    );
}

#[test]
fn a_checkpointed_position_resumes_exactly() {
    let cfg = nbp1406("resume", "batch_rows = 700");
    let ctx = context();
    let full = rows(&read_all(open(&cfg, &ctx, None).as_mut(), None));
    let first = read_all(open(&cfg, &ctx, None).as_mut(), Some(5));
    let position = first
        .last()
        .unwrap()
        .position
        .clone()
        .expect("replay is resumable");
    assert!(
        position.0["offsets"]["s330"].as_u64().unwrap() > 0,
        "{position:?}"
    );
    let rest = read_all(open(&cfg, &ctx, Some(position)).as_mut(), None);
    let mut resumed = rows(&first);
    resumed.extend(rows(&rest));
    assert_eq!(resumed.len(), full.len());
    assert!(
        resumed == full,
        "resumed rows differ from the uninterrupted replay"
    );
}

#[test]
fn corrupted_input_is_counted_and_dead_lettered_and_nothing_else_lost() {
    let dir = tempfile::tempdir().unwrap();
    let s330 = read_lines("NBP1406_s330-2014-08-01");
    let tsg = read_lines("NBP1406_tsg1-2014-08-01");
    // Deterministic damage to the Seapath log: a bit flip in every 37th payload, a cut in every
    // 53rd, and a garbage line after every 101st.
    let mut damaged = Vec::new();
    let (mut flipped, mut cut, mut garbage, mut lost_rows) = (0, 0, 0, 0);
    for (i, line) in s330.iter().enumerate() {
        let (stamp, payload) = line.split_once(' ').unwrap();
        let emits = payload.starts_with("$INRMC") || payload.starts_with("$INHDT");
        if i % 37 == 5 {
            let mut bytes = payload.as_bytes().to_vec();
            let at = (i * 7) % bytes.len();
            bytes[at] ^= 1;
            damaged.push(format!("{stamp} {}", String::from_utf8(bytes).unwrap()));
            flipped += 1;
            lost_rows += usize::from(emits);
        } else if i % 53 == 7 {
            damaged.push(format!(
                "{stamp} {}",
                &payload[..1 + (i % (payload.len() - 4))]
            ));
            cut += 1;
            lost_rows += usize::from(emits);
        } else {
            damaged.push(line.clone());
        }
        if i % 101 == 3 {
            damaged.push(format!("{stamp} \u{1}\u{2}noise noise"));
            damaged.push("no timestamp at all".to_string());
            garbage += 2;
        }
    }
    let mut tsg_damaged = tsg.clone();
    tsg_damaged.insert(100, "2014-08-01T00:03:20.000000Z ###".into());
    std::fs::write(dir.path().join("s330"), damaged.join("\n") + "\n").unwrap();
    std::fs::write(dir.path().join("tsg1"), tsg_damaged.join("\n") + "\n").unwrap();
    let devices = |s330: &str, tsg: &str| {
        format!(
            r#"
[[devices]]
id = "s330"
checksum = "require"
transport = {{ kind = "replay", path = "{s330}" }}
variables = {{ speed_knots = "RMC.speed_knots", heading_deg = "HDT.heading_deg" }}

[[devices]]
id = "tsg1"
format = "instrument"
transport = {{ kind = "replay", path = "{tsg}" }}
fields = ["sea_temperature_c", "conductivity_s_m", "salinity_psu", "sound_velocity_m_s"]
"#
        )
    };
    let clean_cfg = config(&format!(
        "name = \"clean\"\n{}",
        devices(
            &data_dir()
                .join("NBP1406_s330-2014-08-01")
                .display()
                .to_string(),
            &data_dir()
                .join("NBP1406_tsg1-2014-08-01")
                .display()
                .to_string()
        )
    ));
    let bad_cfg = config(&format!(
        "name = \"damaged\"\n{}",
        devices(
            &dir.path().join("s330").display().to_string(),
            &dir.path().join("tsg1").display().to_string()
        )
    ));
    let ctx = context();
    let clean = read_all(open(&clean_cfg, &ctx, None).as_mut(), None);
    let bad = read_all(open(&bad_cfg, &ctx, None).as_mut(), None);
    let rejected: Vec<_> = bad.iter().flat_map(|b| b.rejected.iter()).collect();
    assert_eq!(
        rejected.len(),
        flipped + cut + garbage + 1,
        "one dead letter per bad line"
    );
    for r in &rejected {
        assert!(!r.record.is_empty() && !r.detail.is_empty(), "{r:?}");
        assert_eq!(r.source, "damaged");
        assert!(
            matches!(
                r.reason,
                RejectReason::BadChecksum
                    | RejectReason::Malformed
                    | RejectReason::UnparseableTime
                    | RejectReason::NonNumeric
            ),
            "{r:?}"
        );
    }
    assert!(rejected
        .iter()
        .any(|r| r.reason == RejectReason::BadChecksum));
    assert!(rejected
        .iter()
        .any(|r| r.reason == RejectReason::UnparseableTime));
    let (clean_rows, bad_rows) = (rows(&clean), rows(&bad));
    let count = |rows: &[Row], s: &str| rows.iter().filter(|r| r.station == s).count();
    assert_eq!(
        count(&bad_rows, "s330"),
        count(&clean_rows, "s330") - lost_rows
    );
    let tsg_values = |rows: &[Row]| -> Vec<Vec<Option<f64>>> {
        rows.iter()
            .filter(|r| r.station == "tsg1")
            .map(|r| r.vars.clone())
            .collect()
    };
    assert_eq!(
        tsg_values(&bad_rows),
        tsg_values(&clean_rows),
        "no TSG record lost"
    );
    let checksum_failures = metric(
        &ctx.registry,
        "oceanflow_vessel_checksum_failures_total",
        &[("source", "damaged"), ("device", "s330")],
    );
    let bad_checksums = rejected
        .iter()
        .filter(|r| r.reason == RejectReason::BadChecksum)
        .count();
    assert_eq!(checksum_failures, bad_checksums as f64);
}
