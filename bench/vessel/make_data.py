"""Concatenates the NBP1406 sample logs REPS times, one file per instrument, each repetition
shifted by one day so event times keep increasing (a replay of REPS days of one ship).

    python3 make_data.py SRC_DIR OUT_DIR REPS
"""
import datetime as dt
import os
import sys


def main() -> None:
    src, out, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    stamp = os.path.join(out, ".reps")
    if os.path.exists(stamp) and open(stamp).read() == str(reps):
        return
    for name in sorted(os.listdir(src)):
        if not name.startswith("NBP1406_"):
            continue
        lines = []
        with open(os.path.join(src, name)) as fh:
            for line in fh:
                t, rest = line.rstrip("\n").split(" ", 1)
                lines.append((dt.datetime.fromisoformat(t.replace("Z", "+00:00")), rest))
        with open(os.path.join(out, name), "w") as fh:
            for k in range(reps):
                shift = dt.timedelta(days=k)
                fh.writelines(
                    f"{(t + shift).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} {rest}\n" for t, rest in lines
                )
    with open(stamp, "w") as fh:
        fh.write(str(reps))


if __name__ == "__main__":
    main()
