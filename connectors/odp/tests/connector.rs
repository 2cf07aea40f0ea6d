//! The ODP connector against the local test server (`oceanflow-odp-server`): paging with each
//! cursor carrier, filters with typed variables, projection, every injected fault, restart from
//! a checkpointed position, follow mode, and the HTTP errors.

use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use oceanflow_config::OdpSourceConfig;
use oceanflow_connectors::{Poll, Position, SourceContext, SourceError};
use oceanflow_odp::transform::Converter;
use oceanflow_odp_server::{biota, CursorCarrier, Fault, OdpServer, ServerOptions};
use serde_json::json;

const DATASET: &str = "1d801817-742b-4867-82cf-5597673524eb";
const KEY: &str = "sk_test_secret_value";
const SEED: u64 = 11;

fn server(
    rows: usize,
    page_rows: usize,
    batch_rows: usize,
    carrier: CursorCarrier,
    cursor_batch: bool,
) -> OdpServer {
    let options = ServerOptions {
        page_rows,
        batch_rows,
        carrier,
        cursor_batch,
        ..ServerOptions::new(DATASET, KEY)
    };
    OdpServer::start(biota::generate(0, rows, SEED).unwrap(), options, 0).unwrap()
}

fn config(server: &OdpServer, extra: &str) -> OdpSourceConfig {
    let text = format!(
        r#"
name = "biota"
dataset = "{DATASET}"
base_url = "{}/"
api_key = "{KEY}"
initial_backoff = "10ms"
max_backoff = "2s"
geometry = "footprintWKT"
default_station = "unknown"
{extra}
[mapping]
time = "eventDate"
station = "locationID"
latitude = "decimalLatitude"
longitude = "decimalLongitude"
variables = {{ min_depth_m = "minimumDepthInMeters", max_depth_m = "maximumDepthInMeters" }}
categorical = {{ species = "scientificName" }}
"#,
        server.base_url()
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn context() -> SourceContext {
    SourceContext::new(
        vec!["min_depth_m".into(), "max_depth_m".into()],
        vec!["species".into()],
    )
}

/// What a reader delivered.
#[derive(Default)]
struct Read {
    batches: Vec<RecordBatch>,
    rejected: Vec<oceanflow_connectors::Rejected>,
    positions: Vec<Position>,
    error: Option<SourceError>,
    finished: bool,
}

impl Read {
    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Polls `reader` until it finishes or fails, `stop` says so, or 60 s pass.
fn drain(
    reader: &mut dyn oceanflow_connectors::PartitionReader,
    mut stop: impl FnMut(&Read) -> bool,
) -> Read {
    let mut read = Read::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match reader.poll() {
            Ok(Poll::Batch(b)) => {
                if let Some(p) = b.position {
                    read.positions.push(p);
                }
                if b.batch.num_rows() > 0 {
                    read.batches.push(b.batch);
                }
                read.rejected.extend(b.rejected);
                if stop(&read) {
                    return read;
                }
            }
            Ok(Poll::Idle) => {
                if stop(&read) {
                    return read;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(Poll::Finished) => {
                read.finished = true;
                return read;
            }
            Err(e) => {
                read.error = Some(e);
                return read;
            }
        }
    }
    panic!("the reader neither finished nor failed within 60 s");
}

fn open(
    cfg: &OdpSourceConfig,
    position: Option<Position>,
) -> Box<dyn oceanflow_connectors::PartitionReader> {
    let mut parts = oceanflow_odp::partitions(cfg, &context()).unwrap();
    assert_eq!(parts.len(), 1);
    (parts.remove(0).open)(position).unwrap()
}

/// What two consecutive readings delivered together.
fn joined(a: &Read, b: &Read) -> Read {
    Read {
        batches: a.batches.iter().chain(&b.batches).cloned().collect(),
        rejected: a.rejected.iter().chain(&b.rejected).cloned().collect(),
        ..Read::default()
    }
}

fn read_all(cfg: &OdpSourceConfig) -> Read {
    drain(open(cfg, None).as_mut(), |_| false)
}

/// The canonical rows (and rejections) of `table` converted in one go: what paging must
/// reproduce exactly.
fn expected(
    cfg: &OdpSourceConfig,
    table: &RecordBatch,
) -> (RecordBatch, Vec<oceanflow_connectors::Rejected>) {
    let ctx = context();
    let converter = Converter::new(cfg, &ctx.variables, &ctx.categorical);
    let out = converter
        .convert(&format!("odp:{DATASET}"), 0, table)
        .unwrap();
    (out.batch, out.rejected)
}

fn assert_same(read: &Read, cfg: &OdpSourceConfig, table: &RecordBatch) {
    assert!(read.error.is_none(), "{:?}", read.error);
    let (want, want_rejected) = expected(cfg, table);
    let got = arrow_select::concat::concat_batches(&want.schema(), &read.batches).unwrap();
    assert_eq!(got.num_rows(), want.num_rows());
    assert_eq!(got, want);
    assert_eq!(read.rejected, want_rejected);
}

#[test]
fn multi_page_select_equals_the_dataset_with_every_cursor_carrier() {
    for (carrier, cursor_batch) in [
        (CursorCarrier::Both, false),
        (CursorCarrier::Metadata, true),
        (CursorCarrier::Metadata, false),
        (CursorCarrier::Trailer, false),
    ] {
        let server = server(2_500, 400, 150, carrier, cursor_batch);
        let cfg = config(&server, "");
        let read = read_all(&cfg);
        assert!(read.finished, "{carrier:?}");
        assert_same(&read, &cfg, &server.table());
        let pages = server
            .requests()
            .iter()
            .filter(|r| r.target.contains("sdk/select") && r.body["query"].is_null())
            .count();
        assert_eq!(pages, 7, "{carrier:?}: 2,500 rows in pages of 400");
        let last = read.positions.last().unwrap();
        assert_eq!(last.0["cursor"], "page:2400");
        assert_eq!(last.0["rows"], 2_500);
        // Every request carried the key as ODP expects it.
        assert!(server
            .requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("ApiKey {KEY}") as &str)));
    }
}

#[test]
fn metrics_count_requests_rows_batches_bytes_and_pages() {
    let server = server(1_000, 300, 100, CursorCarrier::Both, false);
    let cfg = config(&server, "");
    let ctx = context();
    let mut parts = oceanflow_odp::partitions(&cfg, &ctx).unwrap();
    let mut reader = (parts.remove(0).open)(None).unwrap();
    let read = drain(reader.as_mut(), |_| false);
    assert!(read.finished);
    let families = ctx.registry.gather();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let f = families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name}"));
        f.get_metric()
            .iter()
            .filter(|m| {
                label.is_none_or(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == k && l.value() == v)
                })
            })
            .map(|m| {
                if m.get_histogram().get_sample_count() > 0 {
                    m.get_histogram().get_sample_count() as f64
                } else {
                    m.get_counter().get_value()
                }
            })
            .sum()
    };
    assert_eq!(value("oceanflow_odp_rows_total", None), 1_000.0);
    assert_eq!(value("oceanflow_odp_batches_total", None), 10.0);
    assert_eq!(
        value("oceanflow_odp_requests_total", Some(("call", "select"))),
        4.0
    );
    assert_eq!(
        value("oceanflow_odp_requests_total", Some(("call", "stats"))),
        1.0
    );
    assert_eq!(
        value("oceanflow_odp_requests_total", Some(("call", "schema"))),
        1.0
    );
    assert_eq!(value("oceanflow_odp_page_seconds", None), 4.0);
    assert!(value("oceanflow_odp_bytes_total", None) > 10_000.0);
}

#[test]
fn filter_with_typed_vars_and_projection() {
    let server = server(3_000, 250, 100, CursorCarrier::Both, false);
    let cfg = config(
        &server,
        r#"
filter = "scientificName == $species AND minimumDepthInMeters >= $depth OR eventDate < $before"
columns = ["eventDate", "locationID", "decimalLatitude", "decimalLongitude", "footprintWKT", "minimumDepthInMeters", "scientificName"]
[vars]
species = "Gadus morhua"
depth = 50
before = 2020-01-01T12:00:00Z
"#,
    );
    let read = read_all(&cfg);
    assert!(read.finished);
    // The expectation, computed row by row from the full table.
    let table = server.table();
    let species = table
        .column_by_name("scientificName")
        .unwrap()
        .as_string::<i32>();
    let depth = table
        .column_by_name("minimumDepthInMeters")
        .unwrap()
        .as_primitive::<arrow_array::types::Float64Type>();
    let time = table
        .column_by_name("eventDate")
        .unwrap()
        .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    let noon = biota::START_US + 12 * 3_600_000_000;
    let keep: arrow_array::BooleanArray = (0..table.num_rows())
        .map(|i| {
            let gadus = species.is_valid(i) && species.value(i) == "Gadus morhua";
            let deep = depth.is_valid(i) && depth.value(i) >= 50.0;
            Some((gadus && deep) || time.value(i) < noon)
        })
        .collect();
    let columns = cfg.columns.clone().unwrap();
    let indices: Vec<usize> = columns
        .iter()
        .map(|c| table.schema().index_of(c).unwrap())
        .collect();
    let want = arrow_select::filter::filter_record_batch(&table.project(&indices).unwrap(), &keep)
        .unwrap();
    assert!(
        want.num_rows() > 50 && want.num_rows() < 1_000,
        "{}",
        want.num_rows()
    );
    assert_same(&read, &cfg, &want);
    let select = server
        .requests()
        .into_iter()
        .find(|r| r.target.contains("sdk/select") && r.body["cols"].is_array())
        .unwrap();
    assert_eq!(
        select.body["vars"],
        json!({
            "species": {"type": "string", "value": "Gadus morhua"},
            "depth": {"type": "integer", "value": 50},
            "before": {"type": "datetime", "value": "2020-01-01T12:00:00Z"},
        })
    );
    assert_eq!(select.body["cols"].as_array().unwrap().len(), 7);
    assert_eq!(select.body["timeout"], 30.0);
    assert!(select.target.contains(&format!("table_id={DATASET}")));
}

#[test]
fn retries_429_with_retry_after_and_503_then_completes() {
    let server = server(1_200, 400, 100, CursorCarrier::Both, false);
    server.inject([
        Fault::TooManyRequests { retry_after: 1 },
        Fault::Unavailable,
    ]);
    let cfg = config(&server, "");
    let started = Instant::now();
    let read = read_all(&cfg);
    assert!(read.finished);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_same(&read, &cfg, &server.table());
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&429) && statuses.contains(&503),
        "{statuses:?}"
    );
}

#[test]
fn a_connection_cut_mid_page_resumes_the_page_without_duplicates() {
    let server = server(1_500, 500, 100, CursorCarrier::Metadata, false);
    // First page whole, second page cut after 2 of its 5 batches, then cut again after 4.
    server.inject([
        Fault::Cut { after_batches: 99 },
        Fault::Cut { after_batches: 2 },
        Fault::Cut { after_batches: 4 },
    ]);
    let cfg = config(&server, "");
    let read = read_all(&cfg);
    assert!(read.finished, "{:?}", read.error);
    assert_same(&read, &cfg, &server.table());
    let page2 = server
        .requests()
        .iter()
        .filter(|r| r.body["cursor"] == "page:500")
        .count();
    assert_eq!(page2, 3, "page 2 was requested again after each cut");
}

#[test]
fn an_in_stream_error_fails_the_source_with_the_server_text() {
    let server = server(1_000, 500, 100, CursorCarrier::Both, false);
    server.inject([Fault::StreamError {
        after_batches: 1,
        message: "scan failed: disk on fire".into(),
    }]);
    let cfg = config(&server, "");
    let read = read_all(&cfg);
    let error = read.error.expect("the source fails").to_string();
    assert!(error.contains("scan failed: disk on fire"), "{error}");
    assert!(error.contains(DATASET), "{error}");
}

#[test]
fn attempts_are_bounded() {
    let server = server(500, 500, 100, CursorCarrier::Both, false);
    server.inject([Fault::Unavailable, Fault::Unavailable, Fault::Unavailable]);
    let cfg = config(&server, "max_attempts = 2");
    let read = read_all(&cfg);
    let error = read.error.expect("the source fails").to_string();
    assert!(
        error.contains("failed 2 times") && error.contains("503"),
        "{error}"
    );
}

#[test]
fn http_errors_are_clear_and_never_show_the_key() {
    let server = server(100, 100, 100, CursorCarrier::Both, false);
    let base = server.base_url();

    let mut cfg = config(&server, "");
    cfg.dataset = "00000000-0000-0000-0000-000000000000".into();
    let error = read_all(&cfg).error.expect("no table").to_string();
    assert!(
        error.contains("has no table") && error.contains("00000000-0000"),
        "{error}"
    );

    let mut cfg = config(&server, "");
    cfg.api_key = Some(oceanflow_config::source::odp::Secret("sk_wrong_key".into()));
    let error = read_all(&cfg).error.expect("refused").to_string();
    assert!(
        error.contains("401") && error.contains("`api_key` setting of source biota"),
        "{error}"
    );
    assert!(!error.contains("sk_wrong_key"), "{error}");

    let cfg = config(&server, "filter = \"invalid_column =! 5\"");
    let error = read_all(&cfg).error.expect("bad filter").to_string();
    assert!(
        error.contains("400") && error.contains("invalid_column"),
        "{error}"
    );

    let mut cfg = config(&server, "");
    cfg.mapping.time = "noSuchColumn".into();
    let error = read_all(&cfg).error.expect("mismatch").to_string();
    assert!(
        error.contains("noSuchColumn") && error.contains("eventDate"),
        "{error}"
    );

    let mut cfg = config(&server, "");
    cfg.api_key = None;
    cfg.base_url = base;
    if std::env::var_os("ODP_API_KEY").is_none() {
        let error = oceanflow_odp::partitions(&cfg, &context())
            .unwrap_err()
            .to_string();
        assert!(error.contains("ODP_API_KEY"), "{error}");
    }
    assert!(!format!("{cfg:?}").contains(KEY));
}

#[test]
fn a_restart_mid_backfill_resumes_from_the_saved_cursor() {
    let server = server(2_000, 450, 100, CursorCarrier::Both, false);
    let cfg = config(&server, "");
    // Stop in the middle of the second page (after 7 batches: page 1 has 5, so 2 into page 2).
    let mut reader = open(&cfg, None);
    let first = drain(reader.as_mut(), |r| r.batches.len() == 7);
    drop(reader);
    let position = first.positions.last().unwrap().clone();
    assert_eq!(position.0["cursor"], "page:450");
    assert_eq!(position.0["skip"], 200);
    let requests_before = server.requests().len();
    let rest = drain(open(&cfg, Some(position)).as_mut(), |_| false);
    assert!(rest.finished, "{:?}", rest.error);
    let resumed = &server.requests()[requests_before..];
    let first_page = resumed
        .iter()
        .find(|r| r.target.contains("sdk/select") && r.body["query"].is_null())
        .unwrap();
    assert_eq!(
        first_page.body["cursor"], "page:450",
        "resumed at the saved cursor"
    );
    assert_same(&joined(&first, &rest), &cfg, &server.table());
}

#[test]
fn follow_mode_picks_up_appended_rows() {
    let server = server(600, 250, 100, CursorCarrier::Both, false);
    let cfg = config(
        &server,
        "[follow]\ncolumn = \"eventDate\"\ninterval = \"50ms\"",
    );
    let mut reader = open(&cfg, None);
    let backfill = drain(reader.as_mut(), |r| {
        r.rows() == 600 && r.positions.last().is_some_and(|p| p.0["phase"] == "follow")
    });
    assert!(!backfill.finished);
    server
        .append(&biota::generate(600, 250, SEED).unwrap())
        .unwrap();
    let followed = drain(reader.as_mut(), |r| r.rows() >= 250);
    assert!(followed.error.is_none(), "{:?}", followed.error);
    assert_same(&joined(&backfill, &followed), &cfg, &server.table());
    let poll = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| {
            r.body["query"]
                .as_str()
                .is_some_and(|q| q.contains("$oceanflow_since"))
        })
        .expect("a follow poll");
    assert_eq!(poll.body["query"], "eventDate > $oceanflow_since");
    assert_eq!(poll.body["vars"]["oceanflow_since"]["type"], "datetime");
    // A restart in follow mode resumes the poll, not the backfill.
    let position = all_positions_last(&followed.positions, &backfill.positions);
    assert_eq!(position.0["phase"], "follow");
    drop(reader);
    let before = server.requests().len();
    let mut again = open(&cfg, Some(position));
    let nothing_new = drain(again.as_mut(), |_| server.requests().len() > before + 5);
    assert_eq!(
        nothing_new.rows(),
        0,
        "no row is delivered twice after a restart"
    );
}

fn all_positions_last(a: &[Position], b: &[Position]) -> Position {
    a.last().or(b.last()).cloned().unwrap()
}

#[test]
fn a_dropped_reader_stops_its_thread_during_a_backoff() {
    let server = server(100, 100, 100, CursorCarrier::Both, false);
    // Retry-After 30 s, capped by max_backoff = 2s: the thread waits 2 s before retrying.
    server.inject([Fault::TooManyRequests { retry_after: 30 }]);
    let cfg = config(&server, "");
    let mut reader = open(&cfg, None);
    let _ = drain(reader.as_mut(), |_| server.pending_faults() == 0);
    let requests = server.requests().len();
    drop(reader);
    // Had the thread kept going, its retry would arrive ~2 s after the 429.
    let deadline = Instant::now() + Duration::from_millis(2_600);
    while Instant::now() < deadline {
        assert_eq!(
            server.requests().len(),
            requests,
            "no request after the drop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
