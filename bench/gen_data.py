#!/usr/bin/env python3
"""Generate the ODP-tutorial-shaped bench workload as Parquet and/or CSV.

Shape (one row per minute from 2020-01-01T00:00Z, numpy seeded 42):
  timestamp         UTC timestamp (Parquet: timestamp[us, tz=UTC]; CSV: 2020-01-01T00:00:00Z)
  station_id        'STATION-%03d', uniform over 50 stations (Parquet: dictionary-encoded)
  latitude          U(58, 72)
  longitude         U(0, 30)
  temperature_c     N(8, 4)
  salinity_psu      N(35, 1)
  depth_m           choice of [5, 10, 25, 50, 100, 200] (float)
  dissolved_oxygen  N(7, 1)
  species           one of 40 names (Parquet: dictionary-encoded)

Rows are generated in chunks of 262,144 (= one Parquet row group), so memory stays at a few
tens of MB whatever the row count, and the same (seed, start_row, rows) always gives the same
rows in every format. `--start-row` offsets the timestamps (the incremental case's extra rows
continue where the base file ends); use a different `--seed` for them.

A file is skipped when it already exists and its sidecar `<file>.meta.json` records the same
parameters and row count (and, for Parquet, the footer agrees).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

GENERATOR_VERSION = 3
CHUNK_ROWS = 262_144
STATIONS = 50
START_US = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z in microseconds
MINUTE_US = 60_000_000
DEPTHS = np.array([5.0, 10.0, 25.0, 50.0, 100.0, 200.0])
SPECIES = [
    "Gadus morhua", "Melanogrammus aeglefinus", "Pollachius virens", "Clupea harengus",
    "Scomber scombrus", "Sprattus sprattus", "Ammodytes marinus", "Merlangius merlangus",
    "Pleuronectes platessa", "Solea solea", "Limanda limanda", "Hippoglossoides platessoides",
    "Reinhardtius hippoglossoides", "Sebastes mentella", "Sebastes norvegicus",
    "Mallotus villosus", "Boreogadus saida", "Micromesistius poutassou", "Trisopterus esmarkii",
    "Lophius piscatorius", "Anarhichas lupus", "Cyclopterus lumpus", "Salmo salar",
    "Squalus acanthias", "Raja clavata", "Calanus finmarchicus", "Calanus hyperboreus",
    "Meganyctiphanes norvegica", "Thysanoessa inermis", "Pandalus borealis",
    "Nephrops norvegicus", "Cancer pagurus", "Paralithodes camtschaticus", "Chionoecetes opilio",
    "Phocoena phocoena", "Orcinus orca", "Balaenoptera acutorostrata", "Megaptera novaeangliae",
    "Lagenorhynchus albirostris", "Delphinapterus leucas",
]
assert len(SPECIES) == 40

STATION_NAMES = pa.array([f"STATION-{i:03d}" for i in range(STATIONS)], pa.string())
SPECIES_NAMES = pa.array(SPECIES, pa.string())

PARQUET_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("station_id", pa.dictionary(pa.int32(), pa.string())),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("temperature_c", pa.float64()),
        ("salinity_psu", pa.float64()),
        ("depth_m", pa.float64()),
        ("dissolved_oxygen", pa.float64()),
        ("species", pa.dictionary(pa.int32(), pa.string())),
    ]
)


def chunks(rows, seed, start_row):
    """Yields pyarrow Tables (Parquet schema) of up to CHUNK_ROWS rows."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        first = start_row + done
        ts = START_US + (np.arange(first, first + n, dtype=np.int64) * MINUTE_US)
        station = rng.integers(0, STATIONS, size=n, dtype=np.int32)
        lat = rng.uniform(58.0, 72.0, size=n)
        lon = rng.uniform(0.0, 30.0, size=n)
        temp = rng.normal(8.0, 4.0, size=n)
        sal = rng.normal(35.0, 1.0, size=n)
        depth = DEPTHS[rng.integers(0, len(DEPTHS), size=n)]
        oxygen = rng.normal(7.0, 1.0, size=n)
        species = rng.integers(0, len(SPECIES), size=n, dtype=np.int32)
        yield pa.Table.from_arrays(
            [
                pa.array(ts, pa.timestamp("us", tz="UTC")),
                pa.DictionaryArray.from_arrays(pa.array(station), STATION_NAMES),
                pa.array(lat),
                pa.array(lon),
                pa.array(temp),
                pa.array(sal),
                pa.array(depth),
                pa.array(oxygen),
                pa.DictionaryArray.from_arrays(pa.array(species), SPECIES_NAMES),
            ],
            schema=PARQUET_SCHEMA,
        )
        done += n


def to_csv_table(t):
    """Plain strings for the dictionary columns and ISO-8601 `...Z` text for the timestamp."""
    ts = t.column("timestamp").to_numpy().astype("datetime64[s]")
    iso = np.char.add(np.datetime_as_string(ts, unit="s"), "Z")
    cols = []
    for name in t.column_names:
        if name == "timestamp":
            cols.append(pa.array(iso, pa.string()))
        elif pa.types.is_dictionary(t.schema.field(name).type):
            cols.append(t.column(name).cast(pa.string()))
        else:
            cols.append(t.column(name))
    return pa.Table.from_arrays(cols, names=t.column_names)


def meta_path(path):
    return path + ".meta.json"


def wanted_meta(fmt, rows, seed, start_row):
    return {
        "generator_version": GENERATOR_VERSION,
        "format": fmt,
        "rows": rows,
        "seed": seed,
        "start_row": start_row,
        "chunk_rows": CHUNK_ROWS,
    }


def up_to_date(path, meta):
    if not (os.path.exists(path) and os.path.exists(meta_path(path))):
        return False
    try:
        with open(meta_path(path)) as f:
            have = json.load(f)
    except (OSError, ValueError):
        return False
    if {k: have.get(k) for k in meta} != meta or have.get("bytes") != os.path.getsize(path):
        return False
    if meta["format"] == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows == meta["rows"]
        except Exception:
            return False
    return True


def generate(path, fmt, rows, seed, start_row):
    meta = wanted_meta(fmt, rows, seed, start_row)
    if up_to_date(path, meta):
        print(f"gen_data: {path} is up to date ({rows:,} rows), skipping", flush=True)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    t0 = time.perf_counter()
    if fmt == "parquet":
        with pq.ParquetWriter(tmp, PARQUET_SCHEMA, compression="snappy") as w:
            for t in chunks(rows, seed, start_row):
                w.write_table(t, row_group_size=CHUNK_ROWS)
    elif fmt == "csv":
        writer = None
        with open(tmp, "wb") as sink:
            for t in chunks(rows, seed, start_row):
                c = to_csv_table(t)
                if writer is None:
                    sink.write((",".join(c.column_names) + "\n").encode())
                    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
                    writer = pacsv.CSVWriter(sink, c.schema, write_options=opts)
                writer.write_table(c)
            if writer is not None:
                writer.close()
    else:
        raise SystemExit(f"gen_data: unknown format {fmt!r}")
    os.replace(tmp, path)
    meta["bytes"] = os.path.getsize(path)
    with open(meta_path(path), "w") as f:
        json.dump(meta, f, indent=1)
    dt = time.perf_counter() - t0
    print(
        f"gen_data: wrote {path}: {rows:,} rows, {meta['bytes'] / 2**20:.1f} MiB in {dt:.1f} s",
        flush=True,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--format", choices=["parquet", "csv"], required=True)
    ap.add_argument("--output", required=True, help="file to write")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--start-row", type=int, default=0, help="row index of the first row's timestamp")
    a = ap.parse_args(argv)
    if a.rows <= 0:
        raise SystemExit("gen_data: --rows must be positive")
    generate(a.output, a.format, a.rows, a.seed, a.start_row)


if __name__ == "__main__":
    sys.exit(main())
