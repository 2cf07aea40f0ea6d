//! The seeded synthetic source, shaped like the ODP tutorial data.
//!
//! Row `i` has event time `start + i * interval`, a station drawn uniformly from
//! `STATION-000…`, latitude U(58, 72), longitude U(0, 30), `temperature_c` N(8, 4),
//! `salinity_psu` N(35, 1), `depth_m` one of 5, 10, 25, 50, 100, 200 and `dissolved_oxygen`
//! N(7, 1). Other configured variables and every categorical field are null.
//!
//! Values are drawn row by row from one `ChaCha8Rng` seeded with the configured seed, in a fixed
//! order, so equal configs give equal rows whatever the batch size; they are collected into
//! column vectors and turned into Arrow arrays once per batch. The feed is one partition of
//! one lane (its event times only grow).

use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::StringBuilder;
use arrow_array::{new_null_array, ArrayRef, Float64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, SchemaRef};
use chrono::DateTime;
use oceanflow_config::schema::{observation_schema, UTC};
use oceanflow_config::SyntheticSourceConfig;
use rand::distr::Uniform;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Normal;

use crate::{Partition, PartitionReader, Poll, Position, SourceBatch, SourceError};

/// Depths the generator picks from, in metres.
const DEPTHS: [f64; 6] = [5.0, 10.0, 25.0, 50.0, 100.0, 200.0];

/// Station names are precomputed up to this many stations and formatted per row above it.
const NAME_TABLE_LIMIT: u32 = 100_000;

/// The single partition of a synthetic source; its id is the source name.
pub fn synthetic_partitions(
    cfg: &SyntheticSourceConfig,
    variables: &[String],
    categorical: &[String],
) -> Result<Vec<Partition>, SourceError> {
    let mut generator = Generator::new(cfg, variables, categorical)?;
    let rows_per_second = cfg.rows_per_second;
    Ok(vec![Partition {
        id: cfg.name.clone(),
        open: Box::new(move |resume| {
            if let Some(position) = resume {
                generator.resume(&position)?;
            }
            let pacer = Pacer::new(rows_per_second, generator.emitted);
            Ok(Box::new(SyntheticReader { generator, pacer }) as Box<dyn PartitionReader>)
        }),
    }])
}

/// What a configured variable column holds.
#[derive(Debug, Clone, Copy)]
enum Variable {
    Temperature,
    Salinity,
    Depth,
    Oxygen,
    Null,
}

impl Variable {
    fn from_name(name: &str) -> Variable {
        match name {
            "temperature_c" => Variable::Temperature,
            "salinity_psu" => Variable::Salinity,
            "depth_m" => Variable::Depth,
            "dissolved_oxygen" => Variable::Oxygen,
            _ => Variable::Null,
        }
    }
}

/// The distributions of one row.
struct Distributions {
    station: Uniform<u32>,
    latitude: Uniform<f64>,
    longitude: Uniform<f64>,
    temperature: Normal<f64>,
    salinity: Normal<f64>,
    depth: Uniform<usize>,
    oxygen: Normal<f64>,
}

impl Distributions {
    fn new(stations: u32) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        Ok(Distributions {
            station: Uniform::new(0, stations).map_err(|e| err(&e))?,
            latitude: Uniform::new(58.0, 72.0).map_err(|e| err(&e))?,
            longitude: Uniform::new(0.0, 30.0).map_err(|e| err(&e))?,
            temperature: Normal::new(8.0, 4.0).map_err(|e| err(&e))?,
            salinity: Normal::new(35.0, 1.0).map_err(|e| err(&e))?,
            depth: Uniform::new(0, DEPTHS.len()).map_err(|e| err(&e))?,
            oxygen: Normal::new(7.0, 1.0).map_err(|e| err(&e))?,
        })
    }
}

/// Column vectors of one batch under construction.
#[derive(Default)]
struct Columns {
    time: Vec<i64>,
    station: Vec<u32>,
    latitude: Vec<f64>,
    longitude: Vec<f64>,
    temperature: Vec<f64>,
    salinity: Vec<f64>,
    depth: Vec<f64>,
    oxygen: Vec<f64>,
}

/// Generates the rows.
struct Generator {
    name: String,
    schema: SchemaRef,
    variables: Vec<Variable>,
    categorical: usize,
    rng: ChaCha8Rng,
    dist: Distributions,
    stations: Stations,
    start_micros: i64,
    interval_micros: i64,
    batch_rows: usize,
    limit: Option<u64>,
    emitted: u64,
}

impl Generator {
    fn new(
        cfg: &SyntheticSourceConfig,
        variables: &[String],
        categorical: &[String],
    ) -> Result<Self, SourceError> {
        let other = |message: String| SourceError::Other {
            context: format!("synthetic source {}", cfg.name),
            message,
        };
        let start = DateTime::parse_from_rfc3339(&cfg.start).map_err(|e| {
            other(format!(
                "start {:?} is not an RFC 3339 time: {e}",
                cfg.start
            ))
        })?;
        let interval_micros = i64::try_from(cfg.interval.as_micros())
            .map_err(|_| other(format!("interval {:?} is too long", cfg.interval)))?;
        if cfg.stations == 0 {
            return Err(other("stations must be at least 1".into()));
        }
        if cfg.batch_rows == 0 {
            return Err(other("batch_rows must be at least 1".into()));
        }
        Ok(Generator {
            name: cfg.name.clone(),
            schema: observation_schema(variables, categorical),
            variables: variables.iter().map(|v| Variable::from_name(v)).collect(),
            categorical: categorical.len(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            dist: Distributions::new(cfg.stations).map_err(other)?,
            stations: Stations::new(cfg.stations),
            start_micros: start.timestamp_micros(),
            interval_micros,
            batch_rows: cfg.batch_rows,
            limit: cfg.limit,
            emitted: 0,
        })
    }

    /// Where the generator stands: rows emitted and the random stream's word position
    /// (decimal text: it is a 68-bit number), which together reproduce the next rows exactly.
    fn position(&self) -> Position {
        Position(serde_json::json!({
            "rows": self.emitted,
            "word_pos": self.rng.get_word_pos().to_string(),
        }))
    }

    /// Continues after a [`Generator::position`].
    fn resume(&mut self, position: &Position) -> Result<(), SourceError> {
        let rows = position.0.get("rows").and_then(serde_json::Value::as_u64);
        let word_pos = position
            .0
            .get("word_pos")
            .and_then(serde_json::Value::as_str)
            .and_then(|w| w.parse::<u128>().ok());
        let (Some(rows), Some(word_pos)) = (rows, word_pos) else {
            return Err(SourceError::Other {
                context: format!("synthetic source {}", self.name),
                message: format!(
                    "cannot resume from position {}: expected {{\"rows\": N, \"word_pos\": \"N\"}}",
                    position.0
                ),
            });
        };
        self.emitted = rows;
        self.rng.set_word_pos(word_pos);
        Ok(())
    }

    /// Rows left before the limit (`u64::MAX` when unbounded).
    fn remaining(&self) -> u64 {
        self.limit
            .map_or(u64::MAX, |l| l.saturating_sub(self.emitted))
    }

    /// Generates the next `rows` rows.
    fn batch(&mut self, rows: usize) -> Result<RecordBatch, SourceError> {
        let mut c = Columns::default();
        for _ in 0..rows {
            self.row(&mut c)?;
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(c.time).with_timezone(UTC)),
            Arc::new(self.stations.array(&c.station)),
            Arc::new(Float64Array::from(c.latitude)),
            Arc::new(Float64Array::from(c.longitude)),
        ];
        let (t, s, d, o): (ArrayRef, ArrayRef, ArrayRef, ArrayRef) = (
            Arc::new(Float64Array::from(c.temperature)),
            Arc::new(Float64Array::from(c.salinity)),
            Arc::new(Float64Array::from(c.depth)),
            Arc::new(Float64Array::from(c.oxygen)),
        );
        for variable in &self.variables {
            columns.push(match variable {
                Variable::Temperature => Arc::clone(&t),
                Variable::Salinity => Arc::clone(&s),
                Variable::Depth => Arc::clone(&d),
                Variable::Oxygen => Arc::clone(&o),
                Variable::Null => new_null_array(&DataType::Float64, rows),
            });
        }
        columns.extend((0..self.categorical).map(|_| new_null_array(&DataType::Utf8, rows)));
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|source| {
            SourceError::Arrow {
                path: self.name.clone(),
                source,
            }
        })
    }

    /// Draws one row, in a fixed order.
    fn row(&mut self, c: &mut Columns) -> Result<(), SourceError> {
        let time = i64::try_from(self.emitted)
            .ok()
            .and_then(|i| i.checked_mul(self.interval_micros))
            .and_then(|offset| offset.checked_add(self.start_micros))
            .ok_or_else(|| SourceError::Other {
                context: format!("synthetic source {}", self.name),
                message: format!("event time of row {} overflows", self.emitted),
            })?;
        let rng = &mut self.rng;
        let d = &self.dist;
        c.time.push(time);
        c.station.push(rng.sample(d.station));
        c.latitude.push(rng.sample(d.latitude));
        c.longitude.push(rng.sample(d.longitude));
        c.temperature.push(rng.sample(d.temperature));
        c.salinity.push(rng.sample(d.salinity));
        c.depth.push(DEPTHS[rng.sample(d.depth)]);
        c.oxygen.push(rng.sample(d.oxygen));
        self.emitted += 1;
        Ok(())
    }
}

/// Station names: `STATION-` and the index, zero-padded to at least three digits.
struct Stations {
    width: usize,
    table: Option<Vec<String>>,
}

impl Stations {
    fn new(count: u32) -> Self {
        let width = count.saturating_sub(1).to_string().len().max(3);
        let table = (count <= NAME_TABLE_LIMIT)
            .then(|| (0..count).map(|i| station_name(i, width)).collect());
        Stations { width, table }
    }

    fn array(&self, indices: &[u32]) -> arrow_array::StringArray {
        let mut builder = StringBuilder::with_capacity(indices.len(), indices.len() * 12);
        for &i in indices {
            match self.table.as_ref().and_then(|t| t.get(i as usize)) {
                Some(name) => builder.append_value(name),
                None => builder.append_value(station_name(i, self.width)),
            }
        }
        builder.finish()
    }
}

fn station_name(index: u32, width: usize) -> String {
    format!("STATION-{index:0width$}")
}

/// Paces emission against a wall clock started at the first poll.
#[derive(Debug)]
struct Pacer {
    rows_per_second: Option<f64>,
    started: Option<Instant>,
    already: u64,
}

impl Pacer {
    /// Paces the rows after the first `already` (emitted before a restart).
    fn new(rows_per_second: Option<f64>, already: u64) -> Self {
        Pacer {
            rows_per_second,
            started: None,
            already,
        }
    }

    /// How many rows may be emitted at `now`, given `emitted` so far. Row `already + i` is
    /// due at `i / rate` seconds after the first poll.
    fn allowed(&mut self, now: Instant, emitted: u64) -> u64 {
        let Some(rate) = self.rows_per_second else {
            return u64::MAX;
        };
        let started = *self.started.get_or_insert(now);
        let due = (now.duration_since(started).as_secs_f64() * rate).floor() + 1.0;
        // Float to int casts saturate; `due` is finite and positive here.
        (due as u64).saturating_sub(emitted.saturating_sub(self.already))
    }
}

/// The reader of the synthetic partition.
struct SyntheticReader {
    generator: Generator,
    pacer: Pacer,
}

impl SyntheticReader {
    /// [`PartitionReader::poll`] at the given wall-clock instant.
    fn poll_at(&mut self, now: Instant) -> Result<Poll, SourceError> {
        let remaining = self.generator.remaining();
        if remaining == 0 {
            return Ok(Poll::Finished);
        }
        let allowed = self.pacer.allowed(now, self.generator.emitted);
        let rows = remaining.min(allowed).min(self.generator.batch_rows as u64);
        if rows == 0 {
            return Ok(Poll::Idle);
        }
        // `rows` is at most `batch_rows`, a usize.
        let batch = self.generator.batch(rows as usize)?;
        Ok(Poll::Batch(SourceBatch {
            batch,
            rejected: Vec::new(),
            bytes: 0,
            position: Some(self.generator.position()),
            lanes: None,
        }))
    }
}

impl PartitionReader for SyntheticReader {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        self.poll_at(Instant::now())
    }
}

#[cfg(test)]
mod tests;
