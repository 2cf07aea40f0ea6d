//! Per-device metrics: lines in, sentences parsed by type, checksum failures, parse errors by
//! reason, last-seen time (a silent instrument shows as a growing gap), clock offset and clock
//! faults, and records left without a position.
//!
//! The families are process-wide (a second vessel source, or a test building several readers,
//! shares them) and registered in each registry the pipeline hands over. The hot path counts
//! into a plain [`DeviceTally`] and [`DeviceMetrics::flush`] adds it once per batch, so parsing
//! never touches an atomic per line.

use std::sync::OnceLock;

use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::clock::ClockFault;
use crate::nmea::{Kind, ParseError};

/// Reason label of instrument lines with too few fields / a non-numeric field, and of lines
/// whose reception time cannot be read, besides the NMEA reasons.
pub const EXTRA_REASONS: [&str; 1] = ["bad_reception_time"];

/// The metric families of every vessel source.
pub struct Families {
    lines: IntCounterVec,
    sentences: IntCounterVec,
    checksum_failures: IntCounterVec,
    parse_errors: IntCounterVec,
    last_seen: GaugeVec,
    clock_offset: GaugeVec,
    clock_faults: IntCounterVec,
    unpositioned: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition is valid")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition is valid")
}

/// The process-wide families.
pub fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        let sd = &["source", "device"];
        Families {
            lines: counter(
                "oceanflow_vessel_lines_total",
                "Lines (or datagrams' lines) received per device.",
                sd,
            ),
            sentences: counter(
                "oceanflow_vessel_sentences_total",
                "Sentences parsed per device and type (`instrument` for instrument lines, \
                 `unsupported` for well-formed sentences without typed fields).",
                &["source", "device", "sentence"],
            ),
            checksum_failures: counter(
                "oceanflow_vessel_checksum_failures_total",
                "NMEA sentences with a wrong, malformed or (where required) missing checksum.",
                sd,
            ),
            parse_errors: counter(
                "oceanflow_vessel_parse_errors_total",
                "Lines or sentences that could not be parsed, by reason.",
                &["source", "device", "reason"],
            ),
            last_seen: gauge(
                "oceanflow_vessel_last_seen_timestamp_seconds",
                "Reception time of the device's latest line (Unix seconds): staleness.",
                sd,
            ),
            clock_offset: gauge(
                "oceanflow_vessel_clock_offset_seconds",
                "Latest instrument time minus reception time (from ZDA/RMC/GGA/GLL).",
                sd,
            ),
            clock_faults: counter(
                "oceanflow_vessel_clock_faults_total",
                "Sentence times rejected as implausible (reception time used instead), by fault.",
                &["source", "device", "fault"],
            ),
            unpositioned: counter(
                "oceanflow_vessel_unpositioned_total",
                "Records emitted without a position: no fix from the position device fresh enough.",
                sd,
            ),
        }
    })
}

impl Families {
    /// Registers every family in `registry` (once per registry; repeats are ignored).
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(self.lines.clone()),
            Box::new(self.sentences.clone()),
            Box::new(self.checksum_failures.clone()),
            Box::new(self.parse_errors.clone()),
            Box::new(self.last_seen.clone()),
            Box::new(self.clock_offset.clone()),
            Box::new(self.clock_faults.clone()),
            Box::new(self.unpositioned.clone()),
        ];
        for c in collectors {
            match registry.register(c) {
                Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Counts of one device since the last flush.
#[derive(Debug, Default, Clone)]
pub struct DeviceTally {
    /// Lines received.
    pub lines: u64,
    /// Sentences by [`Kind::index`], plus instrument lines at the end.
    pub sentences: [u64; Kind::ALL.len() + 1],
    /// Checksum failures.
    pub checksum_failures: u64,
    /// Parse errors by [`ParseError::REASONS`] index, then [`EXTRA_REASONS`].
    pub errors: [u64; ParseError::REASONS.len() + EXTRA_REASONS.len()],
    /// Clock faults by [`ClockFault::ALL`] index.
    pub clock_faults: [u64; 2],
    /// Records without a position.
    pub unpositioned: u64,
    /// Latest reception time seen (µs), if any.
    pub last_seen_us: Option<i64>,
    /// Latest instrument-minus-reception offset (µs), if any.
    pub clock_offset_us: Option<i64>,
}

/// Slot of instrument lines in [`DeviceTally::sentences`].
pub const INSTRUMENT_SLOT: usize = Kind::ALL.len();

/// Slot of a bad reception time in [`DeviceTally::errors`].
pub const BAD_RECEPTION_TIME_SLOT: usize = ParseError::REASONS.len();

/// The labelled series of one device.
pub struct DeviceMetrics {
    lines: IntCounter,
    sentences: Vec<IntCounter>,
    checksum_failures: IntCounter,
    errors: Vec<IntCounter>,
    clock_faults: Vec<IntCounter>,
    unpositioned: IntCounter,
    last_seen: prometheus::Gauge,
    clock_offset: prometheus::Gauge,
}

impl DeviceMetrics {
    /// The series of `device` of `source`, created at zero so dashboards see them at once.
    pub fn new(source: &str, device: &str) -> Self {
        let f = families();
        let sd = [source, device];
        let sentence_names = Kind::ALL.iter().map(|k| k.name()).chain(["instrument"]);
        DeviceMetrics {
            lines: f.lines.with_label_values(&sd),
            sentences: sentence_names
                .map(|n| f.sentences.with_label_values(&[source, device, n]))
                .collect(),
            checksum_failures: f.checksum_failures.with_label_values(&sd),
            errors: ParseError::REASONS
                .iter()
                .chain(EXTRA_REASONS.iter())
                .map(|r| f.parse_errors.with_label_values(&[source, device, r]))
                .collect(),
            clock_faults: ClockFault::ALL
                .iter()
                .map(|c| {
                    f.clock_faults
                        .with_label_values(&[source, device, c.as_str()])
                })
                .collect(),
            unpositioned: f.unpositioned.with_label_values(&sd),
            last_seen: f.last_seen.with_label_values(&sd),
            clock_offset: f.clock_offset.with_label_values(&sd),
        }
    }

    /// Adds `tally` to the series and resets it.
    pub fn flush(&self, tally: &mut DeviceTally) {
        let t = std::mem::take(tally);
        self.lines.inc_by(t.lines);
        for (c, n) in self.sentences.iter().zip(t.sentences) {
            c.inc_by(n);
        }
        self.checksum_failures.inc_by(t.checksum_failures);
        for (c, n) in self.errors.iter().zip(t.errors) {
            c.inc_by(n);
        }
        for (c, n) in self.clock_faults.iter().zip(t.clock_faults) {
            c.inc_by(n);
        }
        self.unpositioned.inc_by(t.unpositioned);
        if let Some(us) = t.last_seen_us {
            self.last_seen.set(us as f64 / 1e6);
        }
        if let Some(us) = t.clock_offset_us {
            self.clock_offset.set(us as f64 / 1e6);
        }
    }
}
