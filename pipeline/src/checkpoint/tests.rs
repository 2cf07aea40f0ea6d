//! Unit tests of the checkpoint store: round trips, damage, versions, failed writes.

use super::legacy::{CheckpointV1, PartitionStateV1, StatsV1, VarStatsV1};
use super::*;
use crate::test_support::file_names;
use oceanflow_operators::VarStats;

fn sample(sequence: u64) -> Checkpoint {
    Checkpoint {
        sequence,
        created_unix_ms: 1_700_000_000_000,
        layout: Layout {
            variables: vec!["t".into()],
            distinct_fields: vec!["species".into()],
            regions: vec!["north".into()],
        },
        groups: vec![(
            GroupKey::Station("A".into()),
            Stats {
                count: 2,
                vars: vec![VarStats::of(1.5)],
                retracted: 0,
            },
        )],
        distinct: vec![(0, 0, "cod".into())],
        partitions: vec![PartitionState {
            source: "s".into(),
            id: "a.csv".into(),
            position: Some(r#"{"offset":42}"#.into()),
            lanes: vec![(String::new(), 7)],
            finished: false,
        }],
    }
}

#[test]
fn roundtrip_and_keep_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 2).unwrap();
    assert_eq!(store.next_sequence().unwrap(), 1);
    for seq in 1..=3 {
        store.write(&sample(seq)).unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(store.next_sequence().unwrap(), 4);
    let (loaded, _) = store.load_latest(&sample(0).layout).unwrap().unwrap();
    assert_eq!(loaded, sample(3));
}

#[test]
fn damaged_newest_falls_back_to_the_previous() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 5).unwrap();
    store.write(&sample(1)).unwrap();
    let newest = store.write(&sample(2)).unwrap().path;
    let whole = fs::read(&newest).unwrap();
    let layout = sample(0).layout;

    // Truncated.
    fs::write(&newest, &whole[..whole.len() - 3]).unwrap();
    assert_eq!(store.load_latest(&layout).unwrap().unwrap().0.sequence, 1);
    // A flipped byte in the body.
    let mut flipped = whole.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    fs::write(&newest, &flipped).unwrap();
    assert!(matches!(
        read(&newest),
        Err(CheckpointError::Corrupt { .. })
    ));
    assert_eq!(store.load_latest(&layout).unwrap().unwrap().0.sequence, 1);
    // Empty.
    fs::write(&newest, b"").unwrap();
    assert_eq!(store.load_latest(&layout).unwrap().unwrap().0.sequence, 1);
}

#[test]
fn newer_format_and_other_layout_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 5).unwrap();
    let path = store.write(&sample(1)).unwrap().path;
    let mut bytes = fs::read(&path).unwrap();
    bytes[4..8].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let err = store.load_latest(&sample(0).layout).unwrap_err();
    assert!(
        err.to_string().contains("cannot be read by this oceanflow"),
        "{err}"
    );

    store.write(&sample(2)).unwrap();
    let mut other = sample(0).layout;
    other.variables.push("salinity".into());
    let err = store.load_latest(&other).unwrap_err();
    assert!(
        matches!(err, CheckpointError::LayoutMismatch { .. }),
        "{err}"
    );
}

/// Writes `bytes` as the checkpoint file of `sequence` in `dir`.
fn plant(dir: &Path, sequence: u64, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{PREFIX}{sequence:020}.{EXTENSION}"));
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_failed_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 3).unwrap();
    // A non-empty directory where the file goes: the temporary file is written and synced,
    // then the rename fails.
    let target = store.path_of(1);
    fs::create_dir(&target).unwrap();
    fs::write(target.join("occupied"), b"x").unwrap();
    let error = store.write(&sample(1)).unwrap_err();
    assert!(matches!(error, CheckpointError::Io { .. }), "{error}");
    let file = |name: &str| name.to_string();
    assert_eq!(
        file_names(dir.path()),
        [file("checkpoint-00000000000000000001.ofck")],
        "only the obstacle stays"
    );
}

#[test]
fn temporary_files_of_a_crash_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 3).unwrap();
    store.write(&sample(1)).unwrap();
    fs::write(
        dir.path().join("checkpoint-00000000000000000002.tmp"),
        b"torn",
    )
    .unwrap();
    fs::write(dir.path().join("notes.tmp"), b"not ours").unwrap();
    let store = CheckpointStore::open(dir.path(), 3).unwrap();
    assert_eq!(
        file_names(dir.path()),
        ["checkpoint-00000000000000000001.ofck", "notes.tmp"]
    );
    assert_eq!(store.next_sequence().unwrap(), 2);
}

#[test]
fn every_file_damaged_is_refused_naming_each_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 5).unwrap();
    // An empty directory starts from nothing.
    assert!(store.load_latest(&sample(0).layout).unwrap().is_none());
    assert!(store.set_aside_if_all_damaged().unwrap().is_empty());

    let whole = fs::read(store.write(&sample(1)).unwrap().path).unwrap();
    let mut flipped = whole.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    let torn = plant(dir.path(), 1, &whole[..whole.len() - 5]);
    let flipped = plant(dir.path(), 2, &flipped);
    let empty = plant(dir.path(), 3, b"");

    let error = store.load_latest(&sample(0).layout).unwrap_err();
    let CheckpointError::AllDamaged { files, .. } = &error else {
        panic!("expected AllDamaged, got {error}");
    };
    let paths: Vec<&Path> = files.iter().map(|d| d.path.as_path()).collect();
    assert_eq!(paths, [empty.as_path(), flipped.as_path(), torn.as_path()]);
    let text = error.to_string();
    for needle in [
        "truncated",
        "checksum mismatch",
        "not a checkpoint",
        "--fresh",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    // Beginning afresh sets them aside (kept, not loaded again) and then loads nothing.
    assert_eq!(store.set_aside_if_all_damaged().unwrap(), *files);
    assert!(store.load_latest(&sample(0).layout).unwrap().is_none());
    assert_eq!(
        file_names(dir.path()),
        [
            "checkpoint-00000000000000000001.ofck.damaged",
            "checkpoint-00000000000000000002.ofck.damaged",
            "checkpoint-00000000000000000003.ofck.damaged",
        ]
    );
}

#[test]
fn one_whole_file_is_enough_and_nothing_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 5).unwrap();
    store.write(&sample(1)).unwrap();
    plant(dir.path(), 2, b"OFCK garbage");
    assert!(store.set_aside_if_all_damaged().unwrap().is_empty());
    let (loaded, _) = store.load_latest(&sample(0).layout).unwrap().unwrap();
    assert_eq!(loaded.sequence, 1);
}

#[test]
fn a_version_1_file_restores() {
    let current = sample(7);
    let v1 = CheckpointV1 {
        sequence: current.sequence,
        created_unix_ms: current.created_unix_ms,
        layout: current.layout.clone(),
        groups: vec![(
            GroupKey::Station("A".into()),
            StatsV1 {
                count: 3,
                vars: vec![VarStatsV1 {
                    count: 3,
                    mean: 2.0,
                    m2: 2.0,
                    min: 1.0,
                    max: 3.0,
                }],
                retracted: 1,
            },
        )],
        distinct: current.distinct.clone(),
        partitions: current
            .partitions
            .iter()
            .map(|p| PartitionStateV1 {
                source: p.source.clone(),
                id: p.id.clone(),
                position: p.position.clone(),
                max_event_us: p.lanes.first().map(|(_, t)| *t),
                finished: p.finished,
            })
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), 7, &frame(1, &bincode::serialize(&v1).unwrap()));
    let store = CheckpointStore::open(dir.path(), 5).unwrap();
    let (restored, _) = store.load_latest(&current.layout).unwrap().unwrap();
    let stats = &restored.groups[0].1;
    assert_eq!((stats.count, stats.retracted), (3, 1));
    let var = &stats.vars[0];
    assert_eq!(
        (var.mean(), var.min(), var.max()),
        (Some(2.0), Some(1.0), Some(3.0))
    );
    assert_eq!(var.stddev(), Some(1.0));
    assert_eq!(
        Checkpoint {
            groups: Vec::new(),
            ..restored.clone()
        },
        Checkpoint {
            groups: Vec::new(),
            ..current
        }
    );
    // Written again, it is a version 2 file that reads back equal.
    assert_eq!(store.next_sequence().unwrap(), 8);
    let written = store
        .write(&Checkpoint {
            sequence: 8,
            ..restored.clone()
        })
        .unwrap();
    assert_eq!(read_frame(&written.path).unwrap().version, FORMAT_VERSION);
    assert_eq!(read(&written.path).unwrap().groups, restored.groups);
}
