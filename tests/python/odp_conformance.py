"""Reads an ODP test server with the real odp-sdk client (tests/tests/odp_sdk.rs).

Usage: odp_conformance.py BASE_URL API_KEY DATASET AREA_WKT OUT_DIR

Writes, as Arrow IPC files the Rust test compares with the server's table:
  select.arrow    every row: dataset(ID).table.select().batches()
  within.arrow    select("footprintWKT within $area", vars={"area": AREA_WKT})
  filtered.arrow  select("minimumDepthInMeters >= $d AND scientificName == 'Gadus morhua'
                  OR eventDate < $t", vars={...}, cols=[...]) — typed int and datetime vars
and summary.json with stats() and schema().
"""
import datetime
import json
import os
import sys

import pyarrow as pa
from odp.new_client import Client


def write(path, schema, batches):
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_file(sink, schema) as writer:
            for b in batches:
                writer.write_batch(b)


def main():
    base_url, api_key, dataset, area, out = sys.argv[1:6]
    client = Client(api_key=api_key, base_url=base_url)
    table = client.dataset(dataset).table

    stats = table.stats()
    schema = table.schema()

    cursor = table.select()
    batches = list(cursor.batches())
    write(os.path.join(out, "select.arrow"), schema, batches)

    within = list(table.select("footprintWKT within $area", vars={"area": area}).batches())
    write(os.path.join(out, "within.arrow"), schema, within)

    cols = ["occurrenceID", "eventDate", "minimumDepthInMeters"]
    cutoff = datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc)
    filtered = list(
        table.select(
            "minimumDepthInMeters >= $d AND scientificName == 'Gadus morhua' OR eventDate < $t",
            columns=cols,
            vars={"d": 100, "t": cutoff},
        ).batches()
    )
    write(os.path.join(out, "filtered.arrow"), pa.schema([schema.field(c) for c in cols]), filtered)

    # 204 (no table): the SDK's schema() answers None.
    missing = client.dataset("00000000-0000-0000-0000-000000000000").table.schema() is None

    bad_filter = None
    try:
        list(table.select("invalid_column =! 5").batches())
    except ValueError as e:
        bad_filter = str(e)

    summary = {
        "num_rows": stats.num_rows,
        "size": stats.size,
        "stats_columns": [c.name for c in stats.columns],
        "schema": [[f.name, str(f.type)] for f in schema],
        "geometry_metadata": (schema.field("footprintWKT").metadata or {}).get(b"isGeometry", b"").decode(),
        "batches": len(batches),
        "select_rows": sum(b.num_rows for b in batches),
        "missing_table_schema_is_none": missing,
        "bad_filter_error": bad_filter,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    main()
