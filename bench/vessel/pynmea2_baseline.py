"""OpenRVDAS-style Python parsing of the same lines, one core, lines in memory: the NMEA
sentence alone with pynmea2 (checksum verified), then with the ISO-8601 reception time parsed
too (what a log replay must do).

    python pynmea2_baseline.py LOG...
"""
import datetime as dt
import json
import sys
import time

import pynmea2


def main() -> None:
    lines = []
    for path in sys.argv[1:]:
        with open(path) as fh:
            for line in fh:
                t, payload = line.rstrip("\n").split(" ", 1)
                if payload.startswith("$"):
                    lines.append((t, payload))
    for mode in ("pynmea2", "pynmea2+timestamps"):
        parsed = errors = 0
        start = time.perf_counter()
        for t, payload in lines:
            if mode != "pynmea2":
                dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
            try:
                pynmea2.parse(payload, check=True)
                parsed += 1
            except pynmea2.ParseError:
                errors += 1
        secs = time.perf_counter() - start
        print(json.dumps({
            "mode": mode, "lines": len(lines), "parsed": parsed, "errors": errors,
            "seconds": round(secs, 3), "lines_per_second": round(len(lines) / secs),
        }))


if __name__ == "__main__":
    main()
