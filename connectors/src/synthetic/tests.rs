use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::Array;

use super::*;

fn config() -> SyntheticSourceConfig {
    SyntheticSourceConfig {
        name: "synth".into(),
        stations: 50,
        seed: 7,
        start: "2020-01-01T00:00:00Z".into(),
        interval: Duration::from_secs(60),
        rows_per_second: None,
        limit: Some(1000),
        batch_rows: 300,
    }
}

fn variables() -> Vec<String> {
    [
        "temperature_c",
        "salinity_psu",
        "depth_m",
        "dissolved_oxygen",
        "chlorophyll",
    ]
    .map(String::from)
    .to_vec()
}

fn open(cfg: &SyntheticSourceConfig, categorical: &[String]) -> Box<dyn PartitionReader> {
    let mut partitions = synthetic_partitions(cfg, &variables(), categorical).unwrap();
    assert_eq!(partitions.len(), 1);
    let partition = partitions.remove(0);
    assert_eq!(partition.id, cfg.name);
    (partition.open)(None).unwrap()
}

/// Every batch until `Finished`.
fn drain(reader: &mut dyn PartitionReader) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    loop {
        match reader.poll().unwrap() {
            Poll::Batch(b) => batches.push(b.batch),
            Poll::Finished => return batches,
            Poll::Idle => panic!("unpaced source went idle"),
        }
    }
}

fn all_rows(cfg: &SyntheticSourceConfig) -> RecordBatch {
    let batches = drain(open(cfg, &[]).as_mut());
    arrow_select::concat::concat_batches(&observation_schema(&variables(), &[]), &batches).unwrap()
}

#[test]
fn equal_seeds_give_equal_rows_whatever_the_batch_size() {
    let a = all_rows(&config());
    let b = all_rows(&SyntheticSourceConfig {
        batch_rows: 7,
        ..config()
    });
    assert_eq!(a, b);
    let c = all_rows(&SyntheticSourceConfig {
        seed: 8,
        ..config()
    });
    assert_ne!(a, c);
}

#[test]
fn limit_and_batch_rows_are_respected() {
    let batches = drain(open(&config(), &[]).as_mut());
    let sizes: Vec<_> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [300, 300, 300, 100]);
}

#[test]
fn rows_have_the_tutorial_shape() {
    let rows = all_rows(&config());
    let time = rows.column(0).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(time.value(0), 1_577_836_800_000_000);
    assert_eq!(time.value(2) - time.value(1), 60_000_000);
    let stations = rows.column(1).as_string::<i32>();
    assert!(stations.iter().flatten().all(|s| {
        s.len() == 11 && s.starts_with("STATION-") && s[8..].parse::<u32>().unwrap() < 50
    }));
    let column = |name: &str| {
        rows.column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    assert!(column("latitude")
        .values()
        .iter()
        .all(|v| (58.0..72.0).contains(v)));
    assert!(column("longitude")
        .values()
        .iter()
        .all(|v| (0.0..30.0).contains(v)));
    assert!(column("depth_m")
        .values()
        .iter()
        .all(|d| DEPTHS.contains(d)));
    let mean = |name: &str| column(name).values().iter().sum::<f64>() / rows.num_rows() as f64;
    assert!((mean("temperature_c") - 8.0).abs() < 0.5);
    assert!((mean("salinity_psu") - 35.0).abs() < 0.2);
    assert!((mean("dissolved_oxygen") - 7.0).abs() < 0.2);
    assert_eq!(column("chlorophyll").null_count(), rows.num_rows());
}

#[test]
fn categorical_fields_are_null_and_wide_station_counts_widen_names() {
    let cfg = SyntheticSourceConfig {
        stations: 5000,
        limit: Some(10),
        ..config()
    };
    let batches = drain(open(&cfg, &["species".into()]).as_mut());
    let batch = &batches[0];
    assert_eq!(batch.column(9).null_count(), 10);
    let name = batch.column(1).as_string::<i32>().value(0).to_string();
    assert_eq!(name.len(), "STATION-0000".len(), "{name}");
}

#[test]
fn unbounded_source_keeps_going() {
    let mut reader = open(
        &SyntheticSourceConfig {
            limit: None,
            ..config()
        },
        &[],
    );
    for _ in 0..5 {
        assert!(matches!(reader.poll().unwrap(), Poll::Batch(b) if b.batch.num_rows() == 300));
    }
}

#[test]
fn pacing_returns_idle_when_ahead_of_the_clock() {
    let cfg = SyntheticSourceConfig {
        rows_per_second: Some(100.0),
        batch_rows: 50,
        ..config()
    };
    let mut reader = SyntheticReader {
        generator: Generator::new(&cfg, &variables(), &[]).unwrap(),
        pacer: Pacer::new(cfg.rows_per_second, 0),
    };
    let t0 = Instant::now();
    let rows = |poll: Poll| match poll {
        Poll::Batch(b) => b.batch.num_rows(),
        Poll::Idle => 0,
        Poll::Finished => panic!("finished early"),
    };
    assert_eq!(rows(reader.poll_at(t0).unwrap()), 1);
    assert!(matches!(reader.poll_at(t0).unwrap(), Poll::Idle));
    let later = t0 + Duration::from_millis(105);
    assert_eq!(rows(reader.poll_at(later).unwrap()), 10);
    assert!(matches!(reader.poll_at(later).unwrap(), Poll::Idle));
    let much_later = t0 + Duration::from_secs(5);
    assert_eq!(rows(reader.poll_at(much_later).unwrap()), 50);
}

#[test]
fn bad_settings_are_errors() {
    for cfg in [
        SyntheticSourceConfig {
            start: "yesterday".into(),
            ..config()
        },
        SyntheticSourceConfig {
            stations: 0,
            ..config()
        },
        SyntheticSourceConfig {
            batch_rows: 0,
            ..config()
        },
    ] {
        let err = synthetic_partitions(&cfg, &variables(), &[]).unwrap_err();
        assert!(matches!(err, SourceError::Other { .. }), "{err}");
    }
}

#[test]
fn resuming_at_a_position_continues_the_same_rows() {
    let cfg = config();
    let expected = all_rows(&cfg);
    let mut first = open(&cfg, &[]);
    let Poll::Batch(head) = first.poll().unwrap() else {
        panic!("a batch")
    };
    let position = head.position.expect("synthetic rows have positions");
    let mut partitions = synthetic_partitions(&cfg, &variables(), &[]).unwrap();
    let mut rest = (partitions.remove(0).open)(Some(position)).unwrap();
    let mut batches = vec![head.batch];
    batches.extend(drain(rest.as_mut()));
    let resumed =
        arrow_select::concat::concat_batches(&observation_schema(&variables(), &[]), &batches)
            .unwrap();
    assert_eq!(resumed, expected);

    let mut partitions = synthetic_partitions(&cfg, &variables(), &[]).unwrap();
    let bad = Position(serde_json::json!({ "rows": 3 }));
    let err = (partitions.remove(0).open)(Some(bad))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("cannot resume"), "{err}");
}
