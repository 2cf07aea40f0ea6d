//! `kind = "vessel"` sources: a vessel's sensor feeds (NMEA 0183 and instrument lines) over
//! UDP, TCP, serial ports or replayed OpenRVDAS log files.
//!
//! A vessel is one source; its instruments are `[[sources.devices]]`. Each device's id is its
//! station in the aggregates. Positions come from one configured position device and are
//! joined onto every record (as of its reception time, within `position_max_age`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{humantime_serde_compat, SourceCheck};

/// The NMEA sentence fields a device may map onto variables, as `SENTENCE.field`.
///
/// The sentence is the formatter without the talker id (`GGA` matches `$GPGGA` and `$INGGA`;
/// `DPT` matches the multibeam's `$KIDPT`); proprietary sentences are named by their
/// manufacturer code plus message id (`PSXN23`, `PUHAWUVH`). Kept here, next to the check that
/// uses it, so `oceanflow validate` reports a misspelt field; the vessel connector resolves
/// the same names (and a test there checks that it resolves every one).
pub const NMEA_FIELDS: &[(&str, &[&str])] = &[
    (
        "GGA",
        &[
            "latitude",
            "longitude",
            "quality",
            "satellites",
            "hdop",
            "altitude_m",
            "geoid_separation_m",
        ],
    ),
    ("GLL", &["latitude", "longitude"]),
    (
        "RMC",
        &[
            "latitude",
            "longitude",
            "speed_knots",
            "speed_ms",
            "course_deg",
            "magnetic_variation_deg",
        ],
    ),
    (
        "VTG",
        &[
            "course_true_deg",
            "course_magnetic_deg",
            "speed_knots",
            "speed_ms",
        ],
    ),
    ("ZDA", &["tz_offset_minutes"]),
    ("HDT", &["heading_deg"]),
    ("DPT", &["depth_m", "offset_m", "max_range_m"]),
    ("DBT", &["depth_m"]),
    ("MTW", &["temperature_c"]),
    ("MWV", &["wind_angle_deg", "wind_speed_ms"]),
    (
        "PSXN20",
        &[
            "horizontal_quality",
            "height_quality",
            "heading_quality",
            "roll_pitch_quality",
        ],
    ),
    ("PSXN22", &["gyro_calibration_deg", "gyro_offset_deg"]),
    (
        "PSXN23",
        &["roll_deg", "pitch_deg", "heading_deg", "heave_m"],
    ),
    ("PUHAWUVH", &["u_ms", "v_ms", "heading_deg"]),
];

/// The sentence whose fields are named by the sender: `XDR.<transducer name>` maps the value of
/// the XDR measurement with that name (e.g. `XDR.AIRTEMP`).
pub const XDR: &str = "XDR";

/// A vessel source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VesselSourceConfig {
    /// Name of the source (metrics label, dead-letter `source` field), e.g. the vessel's name.
    pub name: String,
    /// The device whose GGA/RMC/GLL fixes position every record; absent: no positions.
    #[serde(default)]
    pub position_device: Option<String>,
    /// A fix older than this (by reception time) is not joined; the record keeps no position
    /// and is counted. Default 5 s.
    #[serde(default = "default_position_max_age", with = "humantime_serde_compat")]
    pub position_max_age: Duration,
    /// An instrument clock further than this from the reception time is implausible: the
    /// sentence's time is flagged and the reception time is used instead. Default 10 min.
    #[serde(default = "default_max_clock_offset", with = "humantime_serde_compat")]
    pub max_clock_offset: Duration,
    /// Replay pace: N × real time (by reception time); absent: as fast as possible.
    #[serde(default)]
    pub replay_speed: Option<f64>,
    /// Directory replay paths are resolved against (itself relative to the config file's
    /// directory); absent: the config file's directory. Lets one config replay another
    /// copy of the logs by changing one key.
    #[serde(default)]
    pub replay_dir: Option<String>,
    /// Records per batch handed to the pipeline. Default 4,096.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// The instruments.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// One instrument of a vessel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id; its records' station.
    pub id: String,
    /// Where its lines come from.
    pub transport: TransportConfig,
    /// NMEA 0183 sentences or plain instrument lines. Default `nmea`.
    #[serde(default)]
    pub format: DeviceFormat,
    /// How NMEA checksums are treated. Default `verify` (checked where present).
    #[serde(default)]
    pub checksum: ChecksumPolicy,
    /// Which time is the event time. Default `reception`.
    #[serde(default)]
    pub time: TimeChoice,
    /// NMEA devices: canonical variable → `SENTENCE.field` (see [`NMEA_FIELDS`]). A device emits
    /// one record per sentence of a mapped sentence type; other sentences are parsed and
    /// counted (and positions and clocks read from them) but emit nothing.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Instrument devices: the variable each field position becomes, in order; `""` skips a
    /// field. Fields are separated by commas or, without commas, by whitespace.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Live transports: every line starts with its ISO-8601 UTC reception time and a space,
    /// as OpenRVDAS loggers forward them; that time is used as the reception time instead of
    /// the arrival time. Replayed logs are always timestamped. Default false.
    #[serde(default)]
    pub timestamped: bool,
}

/// How a device's lines arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportConfig {
    /// UDP datagrams (unicast or broadcast) received on `bind`; several lines per datagram.
    Udp {
        /// Local address, e.g. `0.0.0.0:50000`.
        bind: String,
    },
    /// Connect to an instrument server (reconnecting after a second when it drops).
    TcpClient {
        /// Remote address, e.g. `10.0.0.5:4001`.
        connect: String,
    },
    /// Accept connections from senders on `bind`.
    TcpServer {
        /// Local address, e.g. `0.0.0.0:4001`.
        bind: String,
    },
    /// A serial port.
    Serial {
        /// Device path, e.g. `/dev/ttyUSB0`.
        path: String,
        /// Baud rate. Default 9600.
        #[serde(default = "default_baud")]
        baud: u32,
        /// Data bits, 5 to 8. Default 8.
        #[serde(default = "default_data_bits")]
        data_bits: u8,
        /// Parity. Default `none`.
        #[serde(default)]
        parity: Parity,
        /// Stop bits, 1 or 2. Default 1.
        #[serde(default = "default_stop_bits")]
        stop_bits: u8,
    },
    /// An OpenRVDAS log file (`<ISO-8601 UTC reception time> <raw line>` per line).
    Replay {
        /// The file, relative to `replay_dir` / the config file's directory.
        path: String,
    },
}

impl TransportConfig {
    /// The transport's name, as written in `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportConfig::Udp { .. } => "udp",
            TransportConfig::TcpClient { .. } => "tcp_client",
            TransportConfig::TcpServer { .. } => "tcp_server",
            TransportConfig::Serial { .. } => "serial",
            TransportConfig::Replay { .. } => "replay",
        }
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// What a device sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceFormat {
    /// NMEA 0183 sentences (`$`/`!` framing).
    #[default]
    Nmea,
    /// Comma- or whitespace-separated numbers (e.g. an SBE45 thermosalinograph).
    Instrument,
}

/// NMEA checksum handling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumPolicy {
    /// Verify a checksum when the sentence has one; accept sentences without.
    #[default]
    Verify,
    /// Reject sentences without a checksum, verify the others.
    Require,
    /// Never verify (instruments that send wrong or no checksums).
    Ignore,
}

/// Which time a device's records are filed under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeChoice {
    /// When the line was received (the logger's clock).
    #[default]
    Reception,
    /// The time inside the sentence (ZDA, RMC, GGA, GLL) when present and plausible, else
    /// the reception time.
    Sentence,
}

impl VesselSourceConfig {
    /// Records per batch unless the config says otherwise.
    pub const DEFAULT_BATCH_ROWS: usize = 4_096;

    /// Adds this source's problems to `check`.
    pub fn check(&self, check: &mut SourceCheck<'_>) {
        if self.devices.is_empty() {
            check.error("devices", "expected at least one [[sources.devices]]");
        }
        if self.batch_rows == 0 {
            check.error("batch_rows", "expected a positive record count");
        }
        if self.position_max_age.is_zero() {
            check.error("position_max_age", "expected a positive duration");
        }
        if self.max_clock_offset.is_zero() {
            check.error("max_clock_offset", "expected a positive duration");
        }
        if let Some(speed) = self.replay_speed {
            if !(speed.is_finite() && speed > 0.0) {
                check.error(
                    "replay_speed",
                    format!("expected a positive factor of real time (omit it for as fast as possible), got {speed}"),
                );
            }
        }
        let mut ids = HashSet::new();
        let replayed = self
            .devices
            .first()
            .map(|d| matches!(d.transport, TransportConfig::Replay { .. }));
        for (i, device) in self.devices.iter().enumerate() {
            let key = format!("devices[{i}]");
            if device.id.trim().is_empty() {
                check.error(format!("{key}.id"), "expected a non-empty device id");
            } else if !ids.insert(device.id.as_str()) {
                check.error(
                    format!("{key}.id"),
                    format!("device id {:?} is used twice", device.id),
                );
            }
            let is_replay = matches!(device.transport, TransportConfig::Replay { .. });
            if replayed.is_some_and(|r| r != is_replay) {
                check.error(
                    format!("{key}.transport.kind"),
                    format!(
                        "expected every device of a source to be replayed or every device live \
                         (devices[0] is {}, this one {})",
                        self.devices[0].transport.kind(),
                        device.transport.kind()
                    ),
                );
            }
            device.check_transport(&format!("{key}.transport"), check);
            device.check_fields(&key, check);
        }
        if let Some(position) = &self.position_device {
            match self.devices.iter().find(|d| &d.id == position) {
                None => check.error(
                    "position_device",
                    format!("expected the id of a device, got {position:?}"),
                ),
                Some(d) if d.format != DeviceFormat::Nmea => check.error(
                    "position_device",
                    format!("expected an NMEA device (GGA/RMC/GLL fixes); {position:?} is an instrument"),
                ),
                Some(_) => {}
            }
        }
    }
}

impl DeviceConfig {
    fn check_transport(&self, key: &str, check: &mut SourceCheck<'_>) {
        let addr = |check: &mut SourceCheck<'_>, field: &str, value: &str| {
            if value.parse::<SocketAddr>().is_err() {
                check.error(
                    format!("{key}.{field}"),
                    format!(
                        "expected an IP address and port such as \"0.0.0.0:50000\", got {value:?}"
                    ),
                );
            }
        };
        match &self.transport {
            TransportConfig::Udp { bind } | TransportConfig::TcpServer { bind } => {
                addr(check, "bind", bind)
            }
            TransportConfig::TcpClient { connect } => addr(check, "connect", connect),
            TransportConfig::Serial {
                path,
                baud,
                data_bits,
                stop_bits,
                ..
            } => {
                if path.trim().is_empty() {
                    check.error(format!("{key}.path"), "expected a serial device path");
                }
                if *baud == 0 {
                    check.error(format!("{key}.baud"), "expected a positive baud rate");
                }
                if !(5..=8).contains(data_bits) {
                    check.error(
                        format!("{key}.data_bits"),
                        format!("expected 5 to 8 data bits, got {data_bits}"),
                    );
                }
                if !(1..=2).contains(stop_bits) {
                    check.error(
                        format!("{key}.stop_bits"),
                        format!("expected 1 or 2 stop bits, got {stop_bits}"),
                    );
                }
            }
            TransportConfig::Replay { path } => {
                if path.trim().is_empty() {
                    check.error(format!("{key}.path"), "expected a log file path");
                }
            }
        }
    }

    fn check_fields(&self, key: &str, check: &mut SourceCheck<'_>) {
        match self.format {
            DeviceFormat::Nmea => {
                if !self.fields.is_empty() {
                    check.error(
                        format!("{key}.fields"),
                        "expected no `fields` on an NMEA device (map sentence fields with `variables`)",
                    );
                }
                for (variable, field) in &self.variables {
                    let vkey = format!("{key}.variables.{variable}");
                    if !check.variables.contains(variable) {
                        let expected =
                            format!("{variable:?} is not in `variables` ({:?})", check.variables);
                        check.error(vkey.clone(), expected);
                    }
                    if nmea_field(field).is_none() {
                        check.error(
                            vkey,
                            format!(
                                "expected SENTENCE.field, one of {}; got {field:?}",
                                known_fields()
                            ),
                        );
                    }
                }
            }
            DeviceFormat::Instrument => {
                if !self.variables.is_empty() {
                    check.error(
                        format!("{key}.variables"),
                        "expected no `variables` on an instrument device (list positions in `fields`)",
                    );
                }
                if self.fields.iter().all(|f| f.is_empty()) {
                    check.error(
                        format!("{key}.fields"),
                        "expected the variable of each field position (\"\" skips one)",
                    );
                }
                for (j, field) in self.fields.iter().enumerate() {
                    if !field.is_empty() && !check.variables.contains(field) {
                        let expected =
                            format!("{field:?} is not in `variables` ({:?})", check.variables);
                        check.error(format!("{key}.fields[{j}]"), expected);
                    }
                }
                if self.time == TimeChoice::Sentence {
                    check.error(
                        format!("{key}.time"),
                        "expected \"reception\": instrument lines carry no time",
                    );
                }
            }
        }
    }
}

/// Splits `SENTENCE.field` and checks it against [`NMEA_FIELDS`] (or `XDR.<name>`).
pub fn nmea_field(spec: &str) -> Option<(&str, &str)> {
    let (sentence, field) = spec.split_once('.')?;
    if sentence == XDR {
        return (!field.is_empty()).then_some((sentence, field));
    }
    NMEA_FIELDS
        .iter()
        .any(|(s, fields)| *s == sentence && fields.contains(&field))
        .then_some((sentence, field))
}

fn known_fields() -> String {
    NMEA_FIELDS
        .iter()
        .flat_map(|(s, fields)| fields.iter().map(move |f| format!("{s}.{f}")))
        .collect::<Vec<_>>()
        .join(", ")
        + ", XDR.<transducer name>"
}

fn default_position_max_age() -> Duration {
    Duration::from_secs(5)
}
fn default_max_clock_offset() -> Duration {
    Duration::from_secs(600)
}
fn default_batch_rows() -> usize {
    VesselSourceConfig::DEFAULT_BATCH_ROWS
}
fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

#[cfg(test)]
mod tests {
    use crate::ValidConfig;

    const HEAD: &str = r#"
variables = ["temperature_c", "heading_deg"]

[[sources]]
kind = "vessel"
name = "ship"
"#;

    fn problems(sources: &str) -> Vec<(String, String)> {
        match ValidConfig::from_toml(&format!("{HEAD}{sources}")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.into_iter().map(|e| (e.key, e.expected)).collect(),
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../examples/nbp1406.toml");
        if let Err(e) = ValidConfig::from_toml(text) {
            panic!("{e}");
        }
    }

    #[test]
    fn a_good_vessel_source_passes() {
        let found = problems(
            r#"position_device = "gps"
[[sources.devices]]
id = "gps"
transport = { kind = "udp", bind = "0.0.0.0:50000" }
variables = { heading_deg = "HDT.heading_deg", temperature_c = "XDR.AIRTEMP" }
[[sources.devices]]
id = "tsg"
format = "instrument"
transport = { kind = "serial", path = "/dev/ttyUSB0", baud = 9600 }
fields = ["temperature_c", ""]
"#,
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let found = problems(
            r#"position_device = "tsg"
replay_speed = -2
batch_rows = 0
[[sources.devices]]
id = "gps"
transport = { kind = "udp", bind = "nowhere" }
variables = { heading_deg = "HDT.heading", salinity = "GGA.altitude_m" }
fields = ["temperature_c"]
[[sources.devices]]
id = "gps"
format = "instrument"
time = "sentence"
transport = { kind = "serial", path = "/dev/ttyS0", data_bits = 9, stop_bits = 3, baud = 0 }
fields = ["temperature_c", "oxygen"]
[[sources.devices]]
id = "log"
transport = { kind = "replay", path = "x.log" }
[[sources.devices]]
id = "srv"
transport = { kind = "tcp_client", connect = "10.0.0.1" }
"#,
        );
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "sources[0].replay_speed",
            "sources[0].batch_rows",
            "sources[0].position_device",
            "sources[0].devices[0].transport.bind",
            "sources[0].devices[0].variables.heading_deg",
            "sources[0].devices[0].variables.salinity",
            "sources[0].devices[0].fields",
            "sources[0].devices[1].id",
            "sources[0].devices[1].time",
            "sources[0].devices[1].transport.data_bits",
            "sources[0].devices[1].transport.stop_bits",
            "sources[0].devices[1].transport.baud",
            "sources[0].devices[1].fields[1]",
            "sources[0].devices[2].transport.kind",
            "sources[0].devices[3].transport.connect",
        ] {
            assert!(keys.contains(&key), "{key} missing from {found:#?}");
        }
        let heading = found
            .iter()
            .find(|(k, _)| k.ends_with("variables.heading_deg"))
            .map(|(_, e)| e.as_str())
            .unwrap_or_default();
        assert!(
            heading.contains("HDT.heading_deg"),
            "lists the fields: {heading}"
        );
    }

    #[test]
    fn a_source_without_devices_is_reported() {
        let found = problems("");
        assert!(
            found.iter().any(|(k, _)| k == "sources[0].devices"),
            "{found:#?}"
        );
    }
}
