//! Turning a vessel's lines into canonical rows: parse (NMEA or instrument), pick the event
//! time and check the instrument clock, join the position, count per device, and build the
//! canonical Arrow batch. Shared by the replay and the live transports, which only differ in
//! where lines and reception times come from.
//!
//! Every row is tagged with its device as its lane: lateness is judged per device, so a
//! device whose lines lag behind another's is not late against it.

use std::sync::Arc;

use arrow_array::builder::Float64Builder;
use arrow_array::types::Int32Type;
use arrow_array::{
    new_null_array, ArrayRef, DictionaryArray, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use oceanflow_config::schema::{observation_schema, STATION, UTC};
use oceanflow_config::source::vessel::{
    nmea_field, ChecksumPolicy, DeviceConfig, DeviceFormat, TimeChoice, XDR,
};
use oceanflow_config::VesselSourceConfig;
use oceanflow_connectors::{Lanes, Position, RejectReason, Rejected, SourceBatch, SourceError};

use crate::clock::{judge, nearest_instant, ClockFault};
use crate::instrument;
use crate::join::PositionJoin;
use crate::metrics::{DeviceMetrics, DeviceTally, BAD_RECEPTION_TIME_SLOT, INSTRUMENT_SLOT};
use crate::nmea::{self, Kind, Sentence};

/// How one device's lines become rows.
struct Device {
    id: String,
    format: DeviceFormat,
    checksum: ChecksumPolicy,
    time: TimeChoice,
    /// Whether this device's fixes feed the join.
    is_position: bool,
    /// NMEA: per [`Kind::index`], the (value index, variable column) pairs it fills; a kind
    /// with pairs emits a row.
    nmea: Vec<Vec<(usize, usize)>>,
    /// NMEA: XDR measurement names and their variable columns.
    xdr: Vec<(Vec<u8>, usize)>,
    /// Instrument: per field position, its variable column.
    fields: Vec<Option<usize>>,
    /// Instrument: `fields[i].is_some()`.
    mapped: Vec<bool>,
    /// Lines seen so far (dead-letter row numbers).
    lines: u64,
    tally: DeviceTally,
    metrics: DeviceMetrics,
}

/// Builds canonical batches from the lines of every device of a vessel.
pub struct Engine {
    source: String,
    partition: String,
    devices: Vec<Device>,
    join: PositionJoin,
    max_clock_offset_us: i64,
    schema: SchemaRef,
    station_values: ArrayRef,
    categorical: usize,
    time: Vec<i64>,
    station: Vec<i32>,
    lat: Float64Builder,
    lon: Float64Builder,
    vars: Vec<Float64Builder>,
    /// One row's variables, filled before appending.
    row: Vec<Option<f64>>,
    /// Scratch for instrument fields.
    scratch: Vec<Option<f64>>,
    rejected: Vec<Rejected>,
}

/// A configuration the connector cannot run (the config check normally catches it first).
fn config_error(source: &str, message: String) -> SourceError {
    SourceError::Other {
        context: format!("source {source}"),
        message,
    }
}

impl Engine {
    /// The engine of `cfg` for the configured variables and categorical fields.
    pub fn new(
        cfg: &VesselSourceConfig,
        partition: &str,
        variables: &[String],
        categorical: &[String],
    ) -> Result<Self, SourceError> {
        let column = |name: &str| variables.iter().position(|v| v == name);
        let mut devices = Vec::with_capacity(cfg.devices.len());
        for d in &cfg.devices {
            devices.push(Self::device(cfg, d, &column)?);
        }
        let canonical = observation_schema(variables, categorical);
        let mut fields: Vec<Field> = canonical
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        // Device ids as a dictionary: the pipeline interns stations once per value.
        fields[1] = Field::new(
            STATION,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        );
        let station_values: ArrayRef = Arc::new(StringArray::from_iter_values(
            cfg.devices.iter().map(|d| d.id.as_str()),
        ));
        let max_age_us = duration_us(cfg.position_max_age);
        Ok(Engine {
            source: cfg.name.clone(),
            partition: partition.to_string(),
            devices,
            join: PositionJoin::new(max_age_us),
            max_clock_offset_us: duration_us(cfg.max_clock_offset),
            schema: Arc::new(Schema::new(fields)),
            station_values,
            categorical: categorical.len(),
            time: Vec::new(),
            station: Vec::new(),
            lat: Float64Builder::new(),
            lon: Float64Builder::new(),
            vars: variables.iter().map(|_| Float64Builder::new()).collect(),
            row: vec![None; variables.len()],
            scratch: Vec::new(),
            rejected: Vec::new(),
        })
    }

    fn device(
        cfg: &VesselSourceConfig,
        d: &DeviceConfig,
        column: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Device, SourceError> {
        let unknown = |what: String| config_error(&cfg.name, format!("device {}: {what}", d.id));
        let mut nmea = vec![Vec::new(); Kind::ALL.len()];
        let mut xdr = Vec::new();
        for (variable, spec) in &d.variables {
            let col = column(variable)
                .ok_or_else(|| unknown(format!("{variable:?} is not a configured variable")))?;
            let (sentence, field) =
                nmea_field(spec).ok_or_else(|| unknown(format!("unknown field {spec:?}")))?;
            if sentence == XDR {
                xdr.push((field.as_bytes().to_vec(), col));
                continue;
            }
            let (kind, index) = resolve(sentence, field)
                .ok_or_else(|| unknown(format!("unknown field {spec:?}")))?;
            nmea[kind.index()].push((index, col));
        }
        let mut fields = Vec::with_capacity(d.fields.len());
        for f in &d.fields {
            fields.push(if f.is_empty() {
                None
            } else {
                Some(
                    column(f)
                        .ok_or_else(|| unknown(format!("{f:?} is not a configured variable")))?,
                )
            });
        }
        Ok(Device {
            id: d.id.clone(),
            format: d.format,
            checksum: d.checksum,
            time: d.time,
            is_position: cfg.position_device.as_deref() == Some(d.id.as_str()),
            nmea,
            xdr,
            mapped: fields.iter().map(Option::is_some).collect(),
            fields,
            lines: 0,
            tally: DeviceTally::default(),
            metrics: DeviceMetrics::new(&cfg.name, &d.id),
        })
    }

    /// Rows buffered for the next batch.
    pub fn rows(&self) -> usize {
        self.time.len()
    }

    /// Rejections buffered for the next batch.
    pub fn rejections(&self) -> usize {
        self.rejected.len()
    }

    /// Seeds the join with a fix (a resumed replay's checkpointed last fix).
    pub fn seed_fix(&mut self, reception_us: i64, lat: f64, lon: f64) {
        self.join.add(reception_us, lat, lon);
    }

    /// The newest fix of the join.
    pub fn latest_fix(&self) -> Option<(i64, f64, f64)> {
        self.join.latest()
    }

    /// A line whose reception time could not be read: counted and dead-lettered.
    pub fn bad_reception_time(&mut self, device: usize, raw: &[u8]) {
        let d = &mut self.devices[device];
        d.lines += 1;
        d.tally.lines += 1;
        d.tally.errors[BAD_RECEPTION_TIME_SLOT] += 1;
        let row = d.lines - 1;
        let detail = format!(
            "device {}: no ISO-8601 UTC reception time at the start",
            d.id
        );
        self.reject(device, row, RejectReason::UnparseableTime, detail, raw);
    }

    /// Processes one line (`payload`, without reception time) of `device` received at
    /// `reception_us`; `raw` is the record dead letters show (the whole log line).
    pub fn line(&mut self, device: usize, reception_us: i64, payload: &[u8], raw: &[u8]) {
        let d = &mut self.devices[device];
        d.lines += 1;
        d.tally.lines += 1;
        d.tally.last_seen_us = Some(reception_us);
        let row = d.lines - 1;
        match d.format {
            DeviceFormat::Instrument => {
                self.instrument_line(device, row, reception_us, payload, raw)
            }
            DeviceFormat::Nmea => {
                for piece in nmea::split_sentences(payload) {
                    self.sentence(device, row, reception_us, piece, raw);
                }
            }
        }
    }

    fn instrument_line(
        &mut self,
        device: usize,
        row: u64,
        reception_us: i64,
        payload: &[u8],
        raw: &[u8],
    ) {
        let d = &mut self.devices[device];
        self.scratch.clear();
        self.scratch.resize(d.fields.len(), None);
        if let Err(e) = instrument::parse_into(payload.trim_ascii(), &d.mapped, &mut self.scratch) {
            let index = nmea::ParseError::REASONS
                .iter()
                .position(|r| *r == e.reason())
                .unwrap_or(0);
            d.tally.errors[index] += 1;
            let reason = match e {
                instrument::InstrumentError::NonNumeric { .. } => RejectReason::NonNumeric,
                instrument::InstrumentError::TooFewFields { .. } => RejectReason::Malformed,
            };
            let detail = format!("device {}: {e}", d.id);
            self.reject(device, row, reason, detail, raw);
            return;
        }
        d.tally.sentences[INSTRUMENT_SLOT] += 1;
        self.row.fill(None);
        for (col, value) in d.fields.iter().zip(&self.scratch) {
            if let Some(col) = col {
                self.row[*col] = *value;
            }
        }
        let position = self.join.at(reception_us);
        self.push_row(device, reception_us, position);
    }

    fn sentence(&mut self, device: usize, row: u64, reception_us: i64, piece: &[u8], raw: &[u8]) {
        let d = &mut self.devices[device];
        let s = match nmea::parse(piece, d.checksum) {
            Ok(s) => s,
            Err(e) => {
                d.tally.errors[e.reason_index()] += 1;
                let reason = if e.is_checksum() {
                    d.tally.checksum_failures += 1;
                    RejectReason::BadChecksum
                } else {
                    RejectReason::Malformed
                };
                let detail = format!(
                    "device {}: {e} in {:?}",
                    d.id,
                    String::from_utf8_lossy(piece)
                );
                self.reject(device, row, reason, detail, raw);
                return;
            }
        };
        d.tally.sentences[s.kind.index()] += 1;
        if d.is_position {
            if let Some((lat, lon)) = s.fix {
                self.join.add(reception_us, lat, lon);
            }
        }
        let event_us = self.event_time(device, &s, reception_us);
        let d = &self.devices[device];
        let pairs = &d.nmea[s.kind.index()];
        let xdr = s.kind == Kind::Xdr && !d.xdr.is_empty();
        if pairs.is_empty() && !xdr {
            return;
        }
        self.row.fill(None);
        for &(index, col) in pairs {
            self.row[col] = s.values[index];
        }
        if s.kind == Kind::Xdr {
            for (name, col) in &d.xdr {
                self.row[*col] = s.xdr_value(name);
            }
        }
        let position = s.fix.or_else(|| self.join.at(reception_us));
        self.push_row(device, event_us, position);
    }

    /// The event time of a sentence, checking the instrument clock on the way.
    fn event_time(&mut self, device: usize, s: &Sentence<'_>, reception_us: i64) -> i64 {
        let Some(tod) = s.time.time_of_day_us else {
            return reception_us;
        };
        let instant = s
            .time
            .instant_us()
            .unwrap_or_else(|| nearest_instant(tod, reception_us));
        let d = &mut self.devices[device];
        d.tally.clock_offset_us = Some(instant - reception_us);
        match judge(instant, reception_us, self.max_clock_offset_us) {
            Some(fault) => {
                let slot = ClockFault::ALL
                    .iter()
                    .position(|f| *f == fault)
                    .unwrap_or(0);
                if d.tally.clock_faults.iter().all(|n| *n == 0) {
                    tracing::debug!(
                        source = %self.source,
                        device = %d.id,
                        fault = fault.as_str(),
                        offset_s = (instant - reception_us) as f64 / 1e6,
                        "implausible instrument clock; using the reception time"
                    );
                }
                d.tally.clock_faults[slot] += 1;
                reception_us
            }
            None if d.time == TimeChoice::Sentence => instant,
            None => reception_us,
        }
    }

    fn push_row(&mut self, device: usize, time_us: i64, position: Option<(f64, f64)>) {
        self.time.push(time_us);
        self.station.push(device as i32);
        match position {
            Some((lat, lon)) => {
                self.lat.append_value(lat);
                self.lon.append_value(lon);
            }
            None => {
                self.devices[device].tally.unpositioned += 1;
                self.lat.append_null();
                self.lon.append_null();
            }
        }
        for (builder, value) in self.vars.iter_mut().zip(&self.row) {
            builder.append_option(*value);
        }
    }

    fn reject(
        &mut self,
        device: usize,
        row: u64,
        reason: RejectReason,
        detail: String,
        raw: &[u8],
    ) {
        self.rejected.push(Rejected {
            source: self.source.clone(),
            partition: format!("{}#{}", self.partition, self.devices[device].id),
            row: Some(row),
            reason,
            detail,
            record: String::from_utf8_lossy(raw).into_owned(),
        });
    }

    /// Builds the batch of the rows and rejections buffered so far, flushes the device
    /// metrics, and starts the next batch.
    pub fn finish(
        &mut self,
        bytes: u64,
        position: Option<Position>,
    ) -> Result<SourceBatch, SourceError> {
        for d in &mut self.devices {
            d.metrics.flush(&mut d.tally);
        }
        let rows = self.time.len();
        let time =
            TimestampMicrosecondArray::from(std::mem::take(&mut self.time)).with_timezone(UTC);
        let station_keys = std::mem::take(&mut self.station);
        // Each device is its own lane (its lines arrive in order; devices interleave freely).
        let lanes = Lanes {
            ids: self.devices.iter().map(|d| d.id.clone()).collect(),
            of_row: station_keys.iter().map(|&k| k as u32).collect(),
        };
        let keys = Int32Array::from(station_keys);
        let station = DictionaryArray::<Int32Type>::try_new(keys, Arc::clone(&self.station_values))
            .map_err(|e| self.arrow_error(e))?;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(time),
            Arc::new(station),
            Arc::new(self.lat.finish()),
            Arc::new(self.lon.finish()),
        ];
        for b in &mut self.vars {
            let array: Float64Array = b.finish();
            columns.push(Arc::new(array));
        }
        for _ in 0..self.categorical {
            columns.push(new_null_array(&DataType::Utf8, rows));
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|e| self.arrow_error(e))?;
        Ok(SourceBatch {
            batch,
            rejected: std::mem::take(&mut self.rejected),
            bytes,
            position,
            lanes: Some(lanes),
        })
    }

    fn arrow_error(&self, source: arrow_schema::ArrowError) -> SourceError {
        SourceError::Arrow {
            path: self.partition.clone(),
            source,
        }
    }

    /// The id of device `index`.
    pub fn device_id(&self, index: usize) -> &str {
        &self.devices[index].id
    }
}

/// The (kind, value index) of `SENTENCE.field`.
pub fn resolve(sentence: &str, field: &str) -> Option<(Kind, usize)> {
    let kind = Kind::from_name(sentence)?;
    let (_, fields) = oceanflow_config::source::vessel::NMEA_FIELDS
        .iter()
        .find(|(s, _)| *s == sentence)?;
    let index = fields.iter().position(|f| *f == field)?;
    (index < nmea::MAX_VALUES).then_some((kind, index))
}

fn duration_us(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
