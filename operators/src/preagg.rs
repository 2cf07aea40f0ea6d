//! Columnar pre-aggregation: one canonical batch in, one partial [`Stats`] per [`GroupKey`]
//! out (plus the distinct `(region, field, value)` triples present).
//!
//! This is the hot path; it runs in three passes over the batch, none allocating per row:
//!
//! 1. *Slots*: every row gets a small dense slot number per family: its station (interned once
//!    per batch: dictionary keys map to ids once per dictionary entry, plain strings go through
//!    one hash lookup per change of station), its time cell (the finest bucket width any
//!    global bucket or calendar part needs; recomputed only when the time leaves the current
//!    cell), its (station, station cell) pair, and the regions containing its position (an
//!    R-tree lookup, skipped when the position repeats).
//! 2. *Moments*: per variable, one pass over the column (nulls skipped through the validity
//!    bitmap, NaN and infinities treated as null) adds `x - shift` and `(x - shift)²` into the
//!    slots of every family. Each slot has its own shift, its first usable value (taken when
//!    its count is still 0), so a group's sums are of the size of its own spread whatever the
//!    other groups of the batch hold.
//! 3. *Roll-up*: every slot becomes a [`VarStats`] through [`VarStats::from_shifted_sums`]
//!    (keeping its shift), and time cells are merged into bucket and calendar keys through
//!    [`VarStats::merge`], which converts between the cells' shifts.
//!
//! Rows with a null time are skipped; rows whose time is outside the calendar range (about
//! ±262 000 years) count for the station and regional families only.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{
    Array, Float64Array, Int32Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{DataType, TimeUnit};
use oceanflow_config::schema::FIRST_VARIABLE_COLUMN;
use oceanflow_config::BucketWidth;

use crate::agg::{Stats, VarStats};
use crate::calendar::{bucket_range, bucket_start, calendar_value, width_deciding};
use crate::keys::{DistinctKey, GroupKey};
use crate::regional::RegionIndex;
use crate::spec::AggregateSpec;

/// The partial aggregates of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partials {
    /// One entry per key present in the batch, keys unique.
    pub groups: Vec<(GroupKey, Stats)>,
    /// `+1` per distinct `(region, field, value)` present in the batch, keys unique.
    pub distinct: Vec<(DistinctKey, isize)>,
}

impl Partials {
    /// Removes everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.distinct.clear();
    }

    /// Whether the batch contributed nothing.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.distinct.is_empty()
    }
}

/// Why a batch cannot be aggregated: it does not have the canonical layout.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchError {
    /// A canonical column is missing (the batch has too few columns, or lacks a distinct
    /// field by name).
    MissingColumn(String),
    /// A column has a type the operators do not read.
    WrongType {
        /// Column name.
        column: String,
        /// Its type in the batch.
        found: DataType,
    },
    /// The batch has more rows than `u32` can number (the scratch buffers use `u32` rows).
    TooManyRows(usize),
    /// The keep mask does not have one entry per row.
    MaskLength {
        /// Rows in the batch.
        rows: usize,
        /// Entries in the mask.
        mask: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::MissingColumn(name) => write!(f, "batch has no column {name:?}"),
            BatchError::WrongType { column, found } => {
                write!(f, "column {column:?} has unsupported type {found}")
            }
            BatchError::TooManyRows(rows) => write!(f, "batch of {rows} rows is too large"),
            BatchError::MaskLength { rows, mask } => {
                write!(f, "keep mask has {mask} entries for {rows} rows")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// Pre-aggregates canonical batches for one [`AggregateSpec`]; keeps its scratch buffers
/// between batches. One per worker.
#[derive(Debug)]
pub struct PreAggregator {
    spec: AggregateSpec,
    regions: RegionIndex,
    /// Finest width any global bucket or calendar part needs; `None` without either.
    cell_width: Option<BucketWidth>,
    /// Finest per-station bucket width; `None` without per-station buckets.
    station_cell_width: Option<BucketWidth>,
    scratch: Scratch,
}

/// Buffers reused from batch to batch.
#[derive(Debug, Default)]
struct Scratch {
    station: Slots,
    cells: Slots,
    station_cells: Slots,
    regions: Slots,
    /// `(row, region)` for every row in a region.
    region_rows: Vec<(u32, u32)>,
    /// Distinct pass: `value * regions + region` already reported.
    seen: Vec<bool>,
    /// Distinct pass: `(region, value)` in order of discovery.
    found_values: Vec<(u32, u32)>,
}

/// Per-row slot numbers of one family and the sums of every slot.
#[derive(Debug, Default)]
struct Slots {
    /// Slot of each row, [`NO_SLOT`] when the row does not count.
    of_row: Vec<u32>,
    /// Rows per slot.
    rows: Vec<u64>,
    /// `slot * variables + variable`.
    moments: Vec<Moments>,
}

const NO_SLOT: u32 = u32::MAX;

impl Slots {
    fn reset(&mut self, rows: usize, track_rows: bool) {
        self.of_row.clear();
        if track_rows {
            self.of_row.resize(rows, NO_SLOT);
        }
        self.rows.clear();
        self.moments.clear();
    }

    /// Counts `row` in `slot`, creating slots up to it.
    fn count(&mut self, row: usize, slot: u32) {
        let s = slot as usize;
        if s >= self.rows.len() {
            self.rows.resize(s + 1, 0);
        }
        self.rows[s] += 1;
        if let Some(r) = self.of_row.get_mut(row) {
            *r = slot;
        }
    }

    fn size_moments(&mut self, variables: usize) {
        self.moments.clear();
        self.moments
            .resize(self.rows.len() * variables, Moments::EMPTY);
    }

    /// The moments of every variable of `slot` (`variables` of them).
    fn var_stats(&self, slot: usize, variables: usize) -> impl Iterator<Item = VarStats> + '_ {
        self.moments
            .get(slot * variables..(slot + 1) * variables)
            .unwrap_or_default()
            .iter()
            .map(|m| m.to_var_stats())
    }

    fn stats(&self, slot: usize, variables: usize) -> Stats {
        Stats {
            count: self.rows.get(slot).copied().unwrap_or(0),
            vars: self.var_stats(slot, variables).collect(),
            retracted: 0,
        }
    }
}

/// Sums of deviations from the slot's own shift, for one variable over one slot.
#[derive(Debug, Clone, Copy)]
struct Moments {
    count: u64,
    /// The slot's first usable value.
    shift: f64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Moments {
    const EMPTY: Moments = Moments {
        count: 0,
        shift: 0.0,
        sum: 0.0,
        sum_sq: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    #[inline]
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            self.shift = value;
        }
        let shifted = value - self.shift;
        self.count += 1;
        self.sum += shifted;
        self.sum_sq += shifted * shifted;
        if value < self.min {
            self.min = value;
        }
        if value > self.max {
            self.max = value;
        }
    }

    fn to_var_stats(self) -> VarStats {
        VarStats::from_shifted_sums(
            self.count,
            self.shift,
            self.sum,
            self.sum_sq,
            self.min,
            self.max,
        )
    }
}

impl PreAggregator {
    /// A pre-aggregator for `spec`, indexing its regions.
    pub fn new(spec: AggregateSpec) -> PreAggregator {
        let regions = RegionIndex::new(&spec.regions);
        let needed = spec
            .buckets
            .iter()
            .copied()
            .chain(spec.calendar.iter().map(|p| width_deciding(*p)));
        PreAggregator {
            cell_width: needed.min(),
            station_cell_width: spec.station_buckets.iter().copied().min(),
            regions,
            spec,
            scratch: Scratch::default(),
        }
    }

    /// The spec this pre-aggregator computes.
    pub fn spec(&self) -> &AggregateSpec {
        &self.spec
    }

    /// Replaces `out` with the partial aggregates of every row of `batch`.
    pub fn aggregate(&mut self, batch: &RecordBatch, out: &mut Partials) -> Result<(), BatchError> {
        self.aggregate_kept(batch, None, out)
    }

    /// As [`PreAggregator::aggregate`], counting only the rows where `keep` is true (e.g.
    /// [`LateSplit::keep`](crate::late::LateSplit::keep)), without copying the batch.
    pub fn aggregate_kept(
        &mut self,
        batch: &RecordBatch,
        keep: Option<&BooleanBuffer>,
        out: &mut Partials,
    ) -> Result<(), BatchError> {
        out.clear();
        let columns = Columns::of(batch, &self.spec)?;
        if let Some(mask) = keep {
            if mask.len() != batch.num_rows() {
                return Err(BatchError::MaskLength {
                    rows: batch.num_rows(),
                    mask: mask.len(),
                });
            }
        }
        let stations = self.assign_slots(&columns, keep);
        self.accumulate_moments(&columns);
        self.emit_groups(&stations, out);
        self.emit_distinct(&columns, out);
        Ok(())
    }

    /// Pass 1: slots of every family for every counted row.
    fn assign_slots<'a>(&mut self, c: &Columns<'a>, keep: Option<&BooleanBuffer>) -> Layout<'a> {
        let rows = c.time.len();
        // Regions use the station too: its last position is the lookup cache.
        let need_station =
            self.spec.station || self.station_cell_width.is_some() || !self.regions.is_empty();
        let s = &mut self.scratch;
        s.station.reset(rows, self.spec.station);
        s.cells.reset(rows, self.cell_width.is_some());
        s.station_cells
            .reset(rows, self.station_cell_width.is_some());
        s.regions.reset(0, false);
        s.regions.rows.resize(self.spec.regions.len(), 0);
        s.region_rows.clear();

        let mut stations = Interner::new(&c.station);
        let mut cells = self.cell_width.map(CellCursor::new);
        let mut station_cells = self.station_cell_width.map(StationCellCursor::new);
        let mut positions = PositionCache::default();
        for (row, &t) in c.time.values().iter().enumerate() {
            if c.time.is_null(row) || keep.is_some_and(|k| !k.value(row)) {
                continue;
            }
            let station = if need_station {
                stations.id(&c.station, row)
            } else {
                None
            };
            if let (true, Some(id)) = (self.spec.station, station) {
                s.station.count(row, id);
            }
            if let Some(slot) = cells.as_mut().and_then(|cur| cur.slot(t)) {
                s.cells.count(row, slot);
            }
            if let (Some(cur), Some(id)) = (station_cells.as_mut(), station) {
                if let Some(slot) = cur.slot(id, t) {
                    s.station_cells.count(row, slot);
                }
            }
            if self.regions.is_empty() {
                continue;
            }
            let Some((lon, lat)) = c.position(row) else {
                continue;
            };
            let found = positions.regions(&self.regions, station, lon, lat);
            for &region in found {
                s.region_rows.push((row as u32, region));
                if let Some(n) = s.regions.rows.get_mut(region as usize) {
                    *n += 1;
                }
            }
        }
        Layout {
            stations: stations.names,
            cell_starts: cells.map(|c| c.starts).unwrap_or_default(),
            station_cells: station_cells.map(|c| c.keys).unwrap_or_default(),
        }
    }

    /// Pass 2: shifted sums of every variable into the slots of every family.
    fn accumulate_moments(&mut self, c: &Columns<'_>) {
        let s = &mut self.scratch;
        let n = c.vars.len();
        for family in [
            &mut s.station,
            &mut s.cells,
            &mut s.station_cells,
            &mut s.regions,
        ] {
            family.size_moments(n);
        }
        for (var, col) in c.vars.iter().enumerate() {
            let column = Column {
                values: col.values(),
                nulls: col.nulls(),
                var,
                variables: n,
            };
            for family in [&mut s.station, &mut s.cells, &mut s.station_cells] {
                column.add_rows(&family.of_row, &mut family.moments);
            }
            column.add_pairs(&s.region_rows, &mut s.regions.moments);
        }
    }

    /// Pass 3: slots and rolled-up time cells into keyed [`Stats`].
    fn emit_groups(&self, layout: &Layout<'_>, out: &mut Partials) {
        let s = &self.scratch;
        let variables = self.spec.variables.len();
        for (id, name) in layout.stations.iter().enumerate() {
            if s.station.rows.get(id).is_some_and(|n| *n > 0) {
                out.groups.push((
                    GroupKey::Station(name.to_string()),
                    s.station.stats(id, variables),
                ));
            }
        }
        let mut rollup = RollUp::new(variables);
        for (slot, &start) in layout.cell_starts.iter().enumerate() {
            for &width in &self.spec.buckets {
                if let Some(start_us) = bucket_start(width, start) {
                    let key = GroupKey::Bucket {
                        width,
                        start_us,
                        station: None,
                    };
                    rollup.add(key, &s.cells, slot);
                }
            }
            for &part in &self.spec.calendar {
                if let Some(value) = calendar_value(part, start) {
                    rollup.add(GroupKey::Calendar { part, value }, &s.cells, slot);
                }
            }
        }
        for (slot, &(station, start)) in layout.station_cells.iter().enumerate() {
            let Some(name) = layout.stations.get(station as usize) else {
                continue;
            };
            for &width in &self.spec.station_buckets {
                if let Some(start_us) = bucket_start(width, start) {
                    let key = GroupKey::Bucket {
                        width,
                        start_us,
                        station: Some(name.to_string()),
                    };
                    rollup.add(key, &s.station_cells, slot);
                }
            }
        }
        rollup.emit(out);
        for (region, n) in (0u32..).zip(&s.regions.rows) {
            if *n > 0 {
                out.groups.push((
                    GroupKey::Region(region),
                    s.regions.stats(region as usize, variables),
                ));
            }
        }
    }

    /// The distinct `(region, field, value)` triples of the counted rows in regions.
    fn emit_distinct(&mut self, c: &Columns<'_>, out: &mut Partials) {
        let regions = self.spec.regions.len();
        let s = &mut self.scratch;
        for (field, col) in (0u32..).zip(&c.distinct) {
            let mut values = Interner::new(col);
            s.seen.clear();
            s.found_values.clear();
            for &(row, region) in &s.region_rows {
                let Some(value) = values.id(col, row as usize) else {
                    continue;
                };
                let at = value as usize * regions + region as usize;
                if at >= s.seen.len() {
                    s.seen.resize(at + 1, false);
                }
                if !s.seen[at] {
                    s.seen[at] = true;
                    s.found_values.push((region, value));
                }
            }
            for &(region, value) in &s.found_values {
                if let Some(text) = values.names.get(value as usize) {
                    out.distinct.push(((region, field, text.to_string()), 1));
                }
            }
        }
    }
}

/// What pass 1 learned about the batch: slot numbers index these lists.
struct Layout<'a> {
    /// Station names by id.
    stations: Vec<&'a str>,
    /// Start of each time cell, by cell slot.
    cell_starts: Vec<i64>,
    /// `(station id, start of the station cell)` by slot.
    station_cells: Vec<(u32, i64)>,
}

/// One variable column during pass 2.
struct Column<'a> {
    values: &'a [f64],
    nulls: Option<&'a NullBuffer>,
    var: usize,
    variables: usize,
}

impl Column<'_> {
    /// The value of `row`, unless null, NaN or infinite.
    #[inline]
    fn usable(&self, row: usize) -> Option<f64> {
        let v = *self.values.get(row)?;
        (self.nulls.is_none_or(|n| n.is_valid(row)) && v.is_finite()).then_some(v)
    }

    /// Adds every row with a slot into `moments`.
    fn add_rows(&self, of_row: &[u32], moments: &mut [Moments]) {
        for (row, &slot) in of_row.iter().enumerate() {
            if slot == NO_SLOT {
                continue;
            }
            if let Some(v) = self.usable(row) {
                if let Some(m) = moments.get_mut(slot as usize * self.variables + self.var) {
                    m.add(v);
                }
            }
        }
    }

    /// Adds the rows of `(row, slot)` pairs into `moments`.
    fn add_pairs(&self, pairs: &[(u32, u32)], moments: &mut [Moments]) {
        for &(row, slot) in pairs {
            if let Some(v) = self.usable(row as usize) {
                if let Some(m) = moments.get_mut(slot as usize * self.variables + self.var) {
                    m.add(v);
                }
            }
        }
    }
}

/// Merges slots into keys. Slots have shifts of their own, so they merge as [`VarStats`].
struct RollUp {
    variables: usize,
    keys: BTreeMap<GroupKey, Stats>,
}

impl RollUp {
    fn new(variables: usize) -> RollUp {
        RollUp {
            variables,
            keys: BTreeMap::new(),
        }
    }

    fn add(&mut self, key: GroupKey, slots: &Slots, slot: usize) {
        let n = self.variables;
        let stats = self.keys.entry(key).or_insert_with(|| Stats::empty(n));
        stats.count += slots.rows.get(slot).copied().unwrap_or(0);
        for (s, from) in stats.vars.iter_mut().zip(slots.var_stats(slot, n)) {
            s.merge(&from);
        }
    }

    fn emit(self, out: &mut Partials) {
        out.groups.extend(self.keys);
    }
}

/// Maps times to per-batch time cells of one width, recomputing only when a time leaves the
/// current cell.
struct CellCursor {
    width: BucketWidth,
    current: Range<i64>,
    slot: u32,
    slots: FxMap<i64, u32>,
    starts: Vec<i64>,
}

impl CellCursor {
    fn new(width: BucketWidth) -> CellCursor {
        CellCursor {
            width,
            current: 0..0,
            slot: NO_SLOT,
            slots: FxMap::default(),
            starts: Vec::new(),
        }
    }

    /// The cell of `t`, `None` outside the calendar range.
    #[inline]
    fn slot(&mut self, t: i64) -> Option<u32> {
        if self.current.contains(&t) {
            return Some(self.slot);
        }
        let range = bucket_range(self.width, t)?;
        let next = self.starts.len() as u32;
        let slot = *self.slots.entry(range.start).or_insert(next);
        if slot == next {
            self.starts.push(range.start);
        }
        self.current = range;
        self.slot = slot;
        Some(slot)
    }
}

/// Maps (station, time) to per-batch (station, cell) slots, remembering each station's last
/// `(cell, slot)` so time-ordered rows of interleaved stations rarely hash.
struct StationCellCursor {
    cells: CellCursor,
    slots: FxMap<(u32, u32), u32>,
    keys: Vec<(u32, i64)>,
    last_of_station: Vec<(u32, u32)>,
}

impl StationCellCursor {
    fn new(width: BucketWidth) -> StationCellCursor {
        StationCellCursor {
            cells: CellCursor::new(width),
            slots: FxMap::default(),
            keys: Vec::new(),
            last_of_station: Vec::new(),
        }
    }

    #[inline]
    fn slot(&mut self, station: u32, t: i64) -> Option<u32> {
        let cell = self.cells.slot(t)?;
        let s = station as usize;
        if s >= self.last_of_station.len() {
            self.last_of_station.resize(s + 1, (NO_SLOT, NO_SLOT));
        }
        let last = &mut self.last_of_station[s];
        if last.0 == cell {
            return Some(last.1);
        }
        let next = self.keys.len() as u32;
        let slot = *self.slots.entry((station, cell)).or_insert(next);
        if slot == next {
            let start = self.cells.starts.get(cell as usize).copied()?;
            self.keys.push((station, start));
        }
        *last = (cell, slot);
        Some(slot)
    }
}

/// Position bits `(lon, lat)` and the range of its regions in [`PositionCache::regions`].
type CachedPosition = ((u64, u64), Range<usize>);

/// The regions of the last position of each station (moored stations repeat their
/// position), so most rows skip the index. Without a station all rows share one entry.
#[derive(Default)]
struct PositionCache {
    /// Per station: position bits and the range of its regions in `regions`.
    last: Vec<Option<CachedPosition>>,
    regions: Vec<u32>,
    found: Vec<u32>,
}

impl PositionCache {
    /// The regions containing (`lon`, `lat`), the position of a row of `station`.
    #[inline]
    fn regions(&mut self, index: &RegionIndex, station: Option<u32>, lon: f64, lat: f64) -> &[u32] {
        let s = station.map_or(0, |id| id as usize);
        if s >= self.last.len() {
            self.last.resize(s + 1, None);
        }
        let bits = (lon.to_bits(), lat.to_bits());
        let range = match &self.last[s] {
            Some((cached, range)) if *cached == bits => range.clone(),
            _ => {
                index.regions_containing(lon, lat, &mut self.found);
                let range = self.regions.len()..self.regions.len() + self.found.len();
                self.regions.extend_from_slice(&self.found);
                self.last[s] = Some((bits, range.clone()));
                range
            }
        };
        self.regions.get(range).unwrap_or_default()
    }
}

/// The canonical columns of one batch, typed.
struct Columns<'a> {
    time: &'a arrow_array::TimestampMicrosecondArray,
    station: StrCol<'a>,
    latitude: &'a Float64Array,
    longitude: &'a Float64Array,
    vars: Vec<&'a Float64Array>,
    /// The distinct fields, in spec order (empty without regions).
    distinct: Vec<StrCol<'a>>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch, spec: &AggregateSpec) -> Result<Columns<'a>, BatchError> {
        if u32::try_from(batch.num_rows()).is_err() {
            return Err(BatchError::TooManyRows(batch.num_rows()));
        }
        let time = column(batch, 0, "time")?;
        let time = match time.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                time.as_primitive_opt::<TimestampMicrosecondType>()
            }
            _ => None,
        }
        .ok_or_else(|| wrong_type(batch, 0))?;
        let station =
            StrCol::of(column(batch, 1, "station")?).ok_or_else(|| wrong_type(batch, 1))?;
        let vars = (0..spec.variables.len())
            .map(|i| float(batch, FIRST_VARIABLE_COLUMN + i, &spec.variables[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let distinct = if spec.regions.is_empty() {
            Vec::new()
        } else {
            spec.distinct_fields
                .iter()
                .map(|name| {
                    let index = batch
                        .schema_ref()
                        .index_of(name)
                        .map_err(|_| BatchError::MissingColumn(name.clone()))?;
                    StrCol::of(batch.column(index).as_ref()).ok_or_else(|| wrong_type(batch, index))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(Columns {
            time,
            station,
            latitude: float(batch, 2, "latitude")?,
            longitude: float(batch, 3, "longitude")?,
            vars,
            distinct,
        })
    }

    /// `(longitude, latitude)` of `row` when both are present.
    #[inline]
    fn position(&self, row: usize) -> Option<(f64, f64)> {
        if self.latitude.is_null(row) || self.longitude.is_null(row) {
            return None;
        }
        Some((self.longitude.value(row), self.latitude.value(row)))
    }
}

fn column<'a>(
    batch: &'a RecordBatch,
    index: usize,
    name: &str,
) -> Result<&'a dyn Array, BatchError> {
    batch
        .columns()
        .get(index)
        .map(|c| c.as_ref())
        .ok_or_else(|| BatchError::MissingColumn(name.to_string()))
}

fn float<'a>(
    batch: &'a RecordBatch,
    index: usize,
    name: &str,
) -> Result<&'a Float64Array, BatchError> {
    column(batch, index, name)?
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| wrong_type(batch, index))
}

fn wrong_type(batch: &RecordBatch, index: usize) -> BatchError {
    let field = batch.schema_ref().field(index).clone();
    BatchError::WrongType {
        column: field.name().clone(),
        found: field.data_type().clone(),
    }
}

/// A text column: plain, large, view, or dictionary-encoded with `Int32` keys and `Utf8` values.
enum StrCol<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
    Dict {
        keys: &'a Int32Array,
        values: &'a StringArray,
    },
}

impl<'a> StrCol<'a> {
    fn of(array: &'a dyn Array) -> Option<StrCol<'a>> {
        match array.data_type() {
            DataType::Utf8 => array.as_string_opt::<i32>().map(StrCol::Utf8),
            DataType::LargeUtf8 => array.as_string_opt::<i64>().map(StrCol::Large),
            DataType::Utf8View => array.as_string_view_opt().map(StrCol::View),
            DataType::Dictionary(_, _) => {
                let dict = array.as_dictionary_opt::<Int32Type>()?;
                let values = dict.values().as_string_opt::<i32>()?;
                Some(StrCol::Dict {
                    keys: dict.keys(),
                    values,
                })
            }
            _ => None,
        }
    }

    /// Entries of the dictionary (0 for plain columns).
    fn dictionary_len(&self) -> usize {
        match self {
            StrCol::Dict { values, .. } => values.len(),
            _ => 0,
        }
    }

    /// The text of `row` of a plain column (`None` when null, or for dictionaries).
    #[inline]
    fn plain(&self, row: usize) -> Option<&'a str> {
        match self {
            StrCol::Utf8(a) => (!a.is_null(row)).then(|| a.value(row)),
            StrCol::Large(a) => (!a.is_null(row)).then(|| a.value(row)),
            StrCol::View(a) => (!a.is_null(row)).then(|| a.value(row)),
            StrCol::Dict { .. } => None,
        }
    }
}

/// Interns the texts of one column of one batch into dense ids `0..names.len()`.
struct Interner<'a> {
    ids: FxMap<&'a str, u32>,
    names: Vec<&'a str>,
    /// Id of each dictionary entry, [`NO_SLOT`] until first seen.
    dictionary: Vec<u32>,
    last: Option<(&'a str, u32)>,
}

impl<'a> Interner<'a> {
    fn new(col: &StrCol<'a>) -> Interner<'a> {
        Interner {
            ids: FxMap::default(),
            names: Vec::new(),
            dictionary: vec![NO_SLOT; col.dictionary_len()],
            last: None,
        }
    }

    /// The id of the text of `row`, `None` when null.
    #[inline]
    fn id(&mut self, col: &StrCol<'a>, row: usize) -> Option<u32> {
        if let StrCol::Dict { keys, values } = col {
            if keys.is_null(row) {
                return None;
            }
            let entry = usize::try_from(keys.value(row)).ok()?;
            let known = *self.dictionary.get(entry)?;
            if known != NO_SLOT {
                return Some(known);
            }
            if values.is_null(entry) {
                return None;
            }
            let id = self.intern(values.value(entry));
            if let Some(slot) = self.dictionary.get_mut(entry) {
                *slot = id;
            }
            return Some(id);
        }
        let text = col.plain(row)?;
        if let Some((last, id)) = self.last {
            if last == text {
                return Some(id);
            }
        }
        let id = self.intern(text);
        self.last = Some((text, id));
        Some(id)
    }

    fn intern(&mut self, text: &'a str) -> u32 {
        let next = self.names.len() as u32;
        let id = *self.ids.entry(text).or_insert(next);
        if id == next {
            self.names.push(text);
        }
        id
    }
}

/// A hash map with [`FxHasher`]: per-batch maps of short keys, where SipHash would dominate.
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The multiply-rotate hash of rustc (FxHash): fast on short keys, not DoS-resistant, which is
/// acceptable for maps that live for one batch.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Byte by byte: a variable-length copy would call memcpy on every hash.
            let word = rest
                .iter()
                .rev()
                .fold(rest.len() as u64, |w, b| (w << 8) | u64::from(*b));
            self.add(word);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, DictionaryArray, TimestampMicrosecondArray};
    use oceanflow_config::region::parse_wkt_area;
    use oceanflow_config::schema::observation_schema;
    use oceanflow_config::{CalendarPart, Region};

    use super::*;
    use crate::calendar::{DAY_US, HOUR_US};

    /// `(time, station, lon, lat, value, species)`.
    type Row<'a> = (
        i64,
        &'a str,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<&'a str>,
    );

    fn spec() -> AggregateSpec {
        AggregateSpec {
            variables: vec!["v".into()],
            station: true,
            buckets: BucketWidth::ALL.to_vec(),
            station_buckets: vec![BucketWidth::Day, BucketWidth::Hour],
            calendar: vec![
                CalendarPart::MonthOfYear,
                CalendarPart::DayOfWeek,
                CalendarPart::HourOfDay,
            ],
            regions: vec![Region {
                name: "box".into(),
                geometry: parse_wkt_area("POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))").unwrap(),
            }],
            distinct_fields: vec!["species".into()],
        }
    }

    fn batch(rows: &[Row<'_>], dictionary: bool) -> RecordBatch {
        let schema = observation_schema(&["v".into()], &["species".into()]);
        let time = TimestampMicrosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .with_timezone("UTC");
        let names: Vec<&str> = rows.iter().map(|r| r.1).collect();
        let station: ArrayRef = if dictionary {
            Arc::new(names.into_iter().collect::<DictionaryArray<Int32Type>>())
        } else {
            Arc::new(StringArray::from(names))
        };
        let schema = if dictionary {
            let mut fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields[1] = fields[1]
                .clone()
                .with_data_type(station.data_type().clone());
            Arc::new(arrow_schema::Schema::new(fields))
        } else {
            schema
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(time),
            station,
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn run(rows: &[Row<'_>], dictionary: bool) -> Partials {
        let mut pre = PreAggregator::new(spec());
        let mut out = Partials::default();
        pre.aggregate(&batch(rows, dictionary), &mut out).unwrap();
        out
    }

    fn group<'p>(p: &'p Partials, key: &GroupKey) -> &'p Stats {
        &p.groups.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn sorted(mut p: Partials) -> Partials {
        p.groups.sort_by(|a, b| a.0.cmp(&b.0));
        p.distinct.sort();
        p
    }

    const ROWS: [Row<'static>; 5] = [
        (
            3 * HOUR_US,
            "b",
            Some(5.0),
            Some(5.0),
            Some(2.0),
            Some("cod"),
        ),
        (0, "a", Some(5.0), Some(5.0), Some(1.0), Some("cod")),
        (HOUR_US, "a", Some(50.0), Some(5.0), None, Some("ling")),
        (DAY_US + 1, "a", None, None, Some(f64::NAN), None),
        (-1, "b", Some(10.0), Some(0.0), Some(4.0), Some("hake")),
    ];

    #[test]
    fn every_family_of_a_small_batch() {
        let p = run(&ROWS, false);
        let a = group(&p, &GroupKey::Station("a".into()));
        assert_eq!(
            (a.count, a.vars[0].count, a.vars[0].mean()),
            (3, 1, Some(1.0))
        );
        let b = group(&p, &GroupKey::Station("b".into()));
        assert_eq!(
            (b.count, b.vars[0].count, b.vars[0].mean()),
            (2, 2, Some(3.0))
        );
        assert_eq!(b.vars[0].stddev(), Some(2f64.sqrt()));
        let day0 = GroupKey::Bucket {
            width: BucketWidth::Day,
            start_us: 0,
            station: None,
        };
        assert_eq!(group(&p, &day0).count, 3);
        let b_hour = GroupKey::Bucket {
            width: BucketWidth::Hour,
            start_us: -HOUR_US,
            station: Some("b".into()),
        };
        assert_eq!(group(&p, &b_hour).count, 1);
        let year_1969 = GroupKey::Bucket {
            width: BucketWidth::Year,
            start_us: -365 * DAY_US,
            station: None,
        };
        assert_eq!(group(&p, &year_1969).vars[0].max, 4.0);
        let december = GroupKey::Calendar {
            part: CalendarPart::MonthOfYear,
            value: 12,
        };
        assert_eq!(group(&p, &december).count, 1);
        let region = group(&p, &GroupKey::Region(0));
        assert_eq!((region.count, region.vars[0].count), (3, 3));
        let mut distinct = p.distinct.clone();
        distinct.sort();
        assert_eq!(
            distinct,
            vec![((0, 0, "cod".into()), 1), ((0, 0, "hake".into()), 1)]
        );
    }

    #[test]
    fn dictionary_and_plain_stations_give_equal_partials() {
        assert_eq!(sorted(run(&ROWS, true)), sorted(run(&ROWS, false)));
    }

    #[test]
    fn keys_are_unique() {
        let p = sorted(run(&ROWS, false));
        assert!(p.groups.windows(2).all(|w| w[0].0 != w[1].0));
    }

    #[test]
    fn empty_batch_gives_nothing() {
        assert!(run(&[], false).is_empty());
        assert!(run(&[], true).is_empty());
    }

    #[test]
    fn all_null_variables_still_count_rows() {
        let rows: Vec<Row<'_>> = (0..4)
            .map(|i| (i * 1_000, "s", Some(1.0), Some(1.0), None, None))
            .collect();
        let p = run(&rows, false);
        let s = group(&p, &GroupKey::Station("s".into()));
        assert_eq!((s.count, s.vars[0].count), (4, 0));
        assert_eq!(s.vars[0].mean(), None);
        assert!(p.distinct.is_empty());
    }

    #[test]
    fn keep_mask_excludes_rows_and_must_match() {
        let mut pre = PreAggregator::new(spec());
        let mut out = Partials::default();
        let keep = BooleanBuffer::from(vec![true, false, false, false, false]);
        pre.aggregate_kept(&batch(&ROWS, false), Some(&keep), &mut out)
            .unwrap();
        assert_eq!(group(&out, &GroupKey::Station("b".into())).count, 1);
        assert!(out
            .groups
            .iter()
            .all(|(k, _)| *k != GroupKey::Station("a".into())));
        let short = BooleanBuffer::from(vec![true]);
        let err = pre.aggregate_kept(&batch(&ROWS, false), Some(&short), &mut out);
        assert_eq!(err, Err(BatchError::MaskLength { rows: 5, mask: 1 }));
    }

    #[test]
    fn unsorted_times_across_months_land_in_their_buckets() {
        // 2024-01-31T23:00Z and 2024-02-01T00:00Z, alternating.
        let jan = 1_706_742_000_000_000;
        let feb = jan + HOUR_US;
        let rows: Vec<Row<'_>> = [jan, feb, jan, feb, feb]
            .iter()
            .map(|t| (*t, "s", None, None, Some(1.0), None))
            .collect();
        let p = run(&rows, false);
        let month = |start_us| GroupKey::Bucket {
            width: BucketWidth::Month,
            start_us,
            station: None,
        };
        assert_eq!(group(&p, &month(jan - 30 * DAY_US - 23 * HOUR_US)).count, 2);
        assert_eq!(group(&p, &month(feb)).count, 3);
    }

    #[test]
    fn malformed_batches_are_errors() {
        let mut pre = PreAggregator::new(spec());
        let mut out = Partials::default();
        let narrow = RecordBatch::try_from_iter(vec![(
            "time",
            Arc::new(TimestampMicrosecondArray::from(vec![0])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(
            pre.aggregate(&narrow, &mut out),
            Err(BatchError::MissingColumn("station".into()))
        );
        let wrong = RecordBatch::try_from_iter(vec![(
            "time",
            Arc::new(Float64Array::from(vec![0.0])) as ArrayRef,
        )])
        .unwrap();
        assert!(matches!(
            pre.aggregate(&wrong, &mut out),
            Err(BatchError::WrongType { .. })
        ));
    }
}
