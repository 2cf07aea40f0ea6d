"""The tutorial's read path with the real odp-sdk: select().batches() into one pandas frame.

Usage: sdk_bench.py BASE_URL API_KEY DATASET
Prints one JSON line: rows, seconds (select through pandas concat), rows_per_second.
"""
import json
import sys
import time

import pandas as pd
from odp.new_client import Client


def main():
    base_url, api_key, dataset = sys.argv[1:4]
    table = Client(api_key=api_key, base_url=base_url).dataset(dataset).table
    t0 = time.perf_counter()
    frames = [b.to_pandas() for b in table.select().batches()]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    seconds = time.perf_counter() - t0
    print(json.dumps({"rows": len(df), "seconds": seconds, "rows_per_second": len(df) / seconds}))


if __name__ == "__main__":
    main()
