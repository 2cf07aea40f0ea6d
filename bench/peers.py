#!/usr/bin/env python3
"""Run the bench queries Q1-Q4 in one peer engine and write normalized results as JSON.

    peers.py ENGINE --input FILE [--input FILE ...] --output OUT.json [--merge-with PREV.json]

ENGINE is one of: pandas, dask, dask-distributed, polars, duckdb.

Queries (the same as oceanflow's Q1-Q4 configuration, bench/q1q4.toml):
  Q1  count per station
  Q2  temperature_c mean/min/max and depth_m mean/count per station
  Q3  counts by year and by month of year (UTC)
  Q4  count per region; the three tutorial polygons are axis-aligned rectangles, so each is a
      range predicate on (longitude, latitude) here (no spatial extension needed)

With several --input files the engine reads them all (the incremental case's recompute over
base + extra rows). With --merge-with (polars and duckdb only) the engine aggregates only the
--input rows and merges them into the partial aggregates of PREV.json: the hand-coded
"merge partial aggregates" strategy a user could write instead of recomputing.

The output JSON (keys are strings, counts are ints):
  {"engine", "inputs", "rows", "query_s", "setup_s",
   "q1": {station: n},
   "q2": {station: {"temperature_c": {count, sum, mean, min, max}, "depth_m": {count, sum, mean}}},
   "q3": {"year": {"2020": n}, "month_of_year": {"1": n}},
   "q4": {region: n}}
`query_s` runs from just before the first read to materialized results (imports and, for
dask-distributed, cluster start-up are excluded; they are in `setup_s` and in the harness's
wall time).
"""

import argparse
import json
import os
import sys
import time

# (name, lon_min, lon_max, lat_min, lat_max) of the tutorial polygons
#   north_sea     POLYGON((-5 51, 9 51, 9 62, -5 62, -5 51))
#   norwegian_sea POLYGON((-5 62, 15 62, 15 72, -5 72, -5 62))
#   barents_sea   POLYGON((15 68, 40 68, 40 80, 15 80, 15 68))
REGIONS = [
    ("north_sea", -5.0, 9.0, 51.0, 62.0),
    ("norwegian_sea", -5.0, 15.0, 62.0, 72.0),
    ("barents_sea", 15.0, 40.0, 68.0, 80.0),
]
COLUMNS = ["timestamp", "station_id", "latitude", "longitude", "temperature_c", "depth_m"]


def fmt_of(paths):
    exts = {os.path.splitext(p)[1].lower() for p in paths}
    if exts == {".parquet"}:
        return "parquet"
    if exts == {".csv"}:
        return "csv"
    raise SystemExit(f"peers: inputs must all be .parquet or all .csv: {paths}")


def f(x):
    return None if x is None else float(x)


def station_entry(n, t_count, t_sum, t_min, t_max, d_count, d_sum):
    t_count, d_count = int(t_count), int(d_count)
    return {
        "count": int(n),
        "temperature_c": {
            "count": t_count,
            "sum": f(t_sum),
            "mean": (float(t_sum) / t_count) if t_count else None,
            "min": f(t_min),
            "max": f(t_max),
        },
        "depth_m": {
            "count": d_count,
            "sum": f(d_sum),
            "mean": (float(d_sum) / d_count) if d_count else None,
        },
    }


def split_stations(stations):
    """{station: entry} -> (q1, q2)."""
    q1 = {s: e["count"] for s, e in sorted(stations.items())}
    q2 = {s: {k: e[k] for k in ("temperature_c", "depth_m")} for s, e in sorted(stations.items())}
    return q1, q2


# ---------------------------------------------------------------------------------- engines


def run_pandas_like(dd_or_pd, paths, fmt, is_dask):
    if fmt == "parquet":
        df = dd_or_pd.read_parquet(paths if is_dask or len(paths) > 1 else paths[0], columns=COLUMNS)
    elif is_dask:
        df = dd_or_pd.read_csv(paths, usecols=COLUMNS, parse_dates=["timestamp"])
    else:
        import pandas as pd

        parts = [pd.read_csv(p, usecols=COLUMNS, parse_dates=["timestamp"]) for p in paths]
        df = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    g = df.groupby("station_id", observed=True)
    per_station = g.agg(
        {"temperature_c": ["count", "sum", "min", "max"], "depth_m": ["count", "sum"]}
    )
    sizes = g.size()
    ts = df["timestamp"]
    years = ts.dt.year.value_counts()
    months = ts.dt.month.value_counts()
    lat, lon = df["latitude"], df["longitude"]
    regions = [
        ((lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)).sum() for _, x0, x1, y0, y1 in REGIONS
    ]
    if is_dask:
        import dask

        per_station, sizes, years, months, *regions = dask.compute(
            per_station, sizes, years, months, *regions
        )
    stations = {}
    for st, row in per_station.iterrows():
        stations[str(st)] = station_entry(
            sizes.loc[st],
            row[("temperature_c", "count")],
            row[("temperature_c", "sum")],
            row[("temperature_c", "min")],
            row[("temperature_c", "max")],
            row[("depth_m", "count")],
            row[("depth_m", "sum")],
        )
    q3 = {
        "year": {str(int(k)): int(v) for k, v in sorted(years.items())},
        "month_of_year": {str(int(k)): int(v) for k, v in sorted(months.items())},
    }
    q4 = {name: int(n) for (name, *_), n in zip(REGIONS, regions)}
    return stations, q3, q4


def run_pandas(paths, fmt):
    import pandas as pd

    return run_pandas_like(pd, paths, fmt, is_dask=False)


def run_dask(paths, fmt):
    import dask.dataframe as dd

    return run_pandas_like(dd, paths, fmt, is_dask=True)


def run_polars(paths, fmt):
    import polars as pl

    if fmt == "parquet":
        lf = pl.scan_parquet(paths)
    else:
        lf = pl.scan_csv(paths, try_parse_dates=True)
    lf = lf.select(COLUMNS)
    ts = pl.col("timestamp")
    if lf.collect_schema()["timestamp"] == pl.String:
        ts = ts.str.to_datetime(time_zone="UTC")
    per_station = lf.group_by(pl.col("station_id").cast(pl.String)).agg(
        pl.len().alias("n"),
        pl.col("temperature_c").count().alias("t_count"),
        pl.col("temperature_c").sum().alias("t_sum"),
        pl.col("temperature_c").min().alias("t_min"),
        pl.col("temperature_c").max().alias("t_max"),
        pl.col("depth_m").count().alias("d_count"),
        pl.col("depth_m").cast(pl.Float64).sum().alias("d_sum"),
    )
    years = lf.group_by(ts.dt.year().alias("k")).agg(pl.len().alias("n"))
    months = lf.group_by(ts.dt.month().alias("k")).agg(pl.len().alias("n"))
    lat, lon = pl.col("latitude"), pl.col("longitude")
    regions = lf.select(
        [
            ((lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)).sum().alias(name)
            for name, x0, x1, y0, y1 in REGIONS
        ]
    )
    per_station, years, months, regions = pl.collect_all([per_station, years, months, regions])
    stations = {
        r["station_id"]: station_entry(
            r["n"], r["t_count"], r["t_sum"], r["t_min"], r["t_max"], r["d_count"], r["d_sum"]
        )
        for r in per_station.iter_rows(named=True)
    }
    q3 = {
        "year": {str(k): int(n) for k, n in sorted(years.iter_rows())},
        "month_of_year": {str(k): int(n) for k, n in sorted(months.iter_rows())},
    }
    q4 = {k: int(v) for k, v in regions.row(0, named=True).items()}
    return stations, q3, q4


def run_duckdb(paths, fmt):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    plist = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
    cols = ", ".join(COLUMNS)
    if fmt == "parquet":
        src = f"read_parquet({plist})"
    else:
        # Parse the CSV once into a temporary table, then query it (one parse, four scans).
        con.execute(
            f"CREATE TEMP TABLE obs AS SELECT {cols} FROM "
            f"read_csv({plist}, header = true, types = {{'timestamp': 'TIMESTAMPTZ'}})"
        )
        src = "obs"
    # Four plain queries (measured faster than one GROUPING SETS query over Parquet).
    per_station = con.execute(
        f"""SELECT station_id::VARCHAR, count(*), count(temperature_c), sum(temperature_c),
                   min(temperature_c), max(temperature_c), count(depth_m), sum(depth_m::DOUBLE)
            FROM {src} GROUP BY 1"""
    ).fetchall()
    years = con.execute(f"SELECT year(timestamp), count(*) FROM {src} GROUP BY 1").fetchall()
    months = con.execute(f"SELECT month(timestamp), count(*) FROM {src} GROUP BY 1").fetchall()
    region_cols = ", ".join(
        f"count(*) FILTER (WHERE longitude BETWEEN {x0} AND {x1} AND latitude BETWEEN {y0} AND {y1})"
        for _, x0, x1, y0, y1 in REGIONS
    )
    regions = con.execute(f"SELECT {region_cols} FROM {src}").fetchone()
    stations = {r[0]: station_entry(*r[1:]) for r in per_station}
    q3 = {
        "year": {str(k): int(n) for k, n in sorted(years)},
        "month_of_year": {str(k): int(n) for k, n in sorted(months)},
    }
    q4 = {name: int(n) for (name, *_), n in zip(REGIONS, regions)}
    return stations, q3, q4


ENGINES = {
    "pandas": run_pandas,
    "dask": run_dask,
    "dask-distributed": run_dask,
    "polars": run_polars,
    "duckdb": run_duckdb,
}
MERGEABLE = {"polars", "duckdb"}


def merge(prev, stations, q3, q4):
    """Merges new partial aggregates into a previous result (same JSON shape)."""
    merged = {}
    for st in sorted(set(prev["q1"]) | set(stations)):
        if st not in prev["q1"]:
            merged[st] = stations[st]
            continue
        pt, pd_ = prev["q2"][st]["temperature_c"], prev["q2"][st]["depth_m"]
        old = station_entry(
            prev["q1"][st], pt["count"], pt["sum"], pt["min"], pt["max"], pd_["count"], pd_["sum"]
        )
        if st not in stations:
            merged[st] = old
            continue
        new = stations[st]
        nt, ot = new["temperature_c"], old["temperature_c"]
        mins = [x for x in (ot["min"], nt["min"]) if x is not None]
        maxs = [x for x in (ot["max"], nt["max"]) if x is not None]
        merged[st] = station_entry(
            old["count"] + new["count"],
            ot["count"] + nt["count"],
            (ot["sum"] or 0.0) + (nt["sum"] or 0.0),
            min(mins) if mins else None,
            max(maxs) if maxs else None,
            old["depth_m"]["count"] + new["depth_m"]["count"],
            (old["depth_m"]["sum"] or 0.0) + (new["depth_m"]["sum"] or 0.0),
        )
    out_q3 = {}
    for grouping in ("year", "month_of_year"):
        acc = dict(prev["q3"][grouping])
        for k, n in q3[grouping].items():
            acc[k] = acc.get(k, 0) + n
        out_q3[grouping] = dict(sorted(acc.items(), key=lambda kv: int(kv[0])))
    out_q4 = {name: prev["q4"].get(name, 0) + q4.get(name, 0) for name, *_ in REGIONS}
    return merged, out_q3, out_q4


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("engine", choices=sorted(ENGINES))
    ap.add_argument("--input", action="append", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--merge-with", help="previous result JSON to merge the new rows into")
    a = ap.parse_args(argv)
    paths = [os.path.abspath(p) for p in a.input]
    fmt = fmt_of(paths)
    if a.merge_with and a.engine not in MERGEABLE:
        raise SystemExit(f"peers: --merge-with is implemented for {sorted(MERGEABLE)} only")

    # Import the engine's library before the clock starts (the functions re-import cheaply).
    import importlib

    for mod in {
        "pandas": ["pandas"],
        "dask": ["pandas", "dask.dataframe"],
        "dask-distributed": ["pandas", "dask.dataframe", "distributed"],
        "polars": ["polars"],
        "duckdb": ["duckdb"],
    }[a.engine]:
        importlib.import_module(mod)

    t_setup = time.perf_counter()
    client = None
    if a.engine == "dask-distributed":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    setup_s = time.perf_counter() - t_setup

    t0 = time.perf_counter()
    if a.merge_with:
        with open(a.merge_with) as fh:
            prev = json.load(fh)
    stations, q3, q4 = ENGINES[a.engine](paths, fmt)
    if a.merge_with:
        stations, q3, q4 = merge(prev, stations, q3, q4)
    query_s = time.perf_counter() - t0

    q1, q2 = split_stations(stations)
    out = {
        "engine": a.engine + ("+merge" if a.merge_with else ""),
        "inputs": paths,
        "rows": sum(q1.values()),
        "query_s": query_s,
        "setup_s": setup_s,
        "q1": q1,
        "q2": q2,
        "q3": q3,
        "q4": q4,
    }
    with open(a.output, "w") as fh:
        json.dump(out, fh, indent=1)
    if client is not None:
        client.close()
        cluster.close()
    print(f"{out['engine']}: {out['rows']:,} rows in {query_s:.3f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
