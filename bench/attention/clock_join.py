#!/usr/bin/env python3
"""Each bench_attention row's mean SM clock, power and temperature while it was timed.

Usage: clock_join.py CLOCKS_CSV BENCH_JSONL [BENCH_JSONL ...]

CLOCKS_CSV is what `nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu
--format=csv,noheader,nounits --loop-ms=50` wrote while the benchmarks ran; each JSONL row carries
the wall-clock span of its timed calls (t0, t1, seconds since the epoch). nvidia-smi's timestamps
are local time, as time.mktime reads them. Its power reading is averaged by the driver over a
window of its own, so a row timed for 0.1 s shows mostly the power of what ran before it.
"""
import json
import sys
import time
from datetime import datetime


def samples(path):
    out = []
    for line in open(path):
        f = [x.strip() for x in line.split(",")]
        try:
            stamp = datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f")
            t = time.mktime(stamp.timetuple()) + stamp.microsecond / 1e6
            out.append((t, float(f[1]), float(f[2]), float(f[3])))
        except (ValueError, IndexError):
            pass
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    s_all = samples(sys.argv[1])
    for path in sys.argv[2:]:
        for line in open(path):
            if not line.strip():
                continue
            r = json.loads(line)
            if "t0" not in r:
                continue
            s = [x for x in s_all if r["t0"] <= x[0] <= r["t1"]]
            if not s:
                continue
            n = len(s)
            label = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            print("clocks %-16s %-11s %-22s hold %3.1f s  %6.1f TFLOP/s  SM %4.0f MHz, %3.0f W, "
                  "%2.0f C (%d samples)" % (label, r["shape"], r["kernel"], r.get("hold_s", 0.0),
                                            r["tflops"], sum(x[1] for x in s) / n,
                                            sum(x[2] for x in s) / n, sum(x[3] for x in s) / n, n))


if __name__ == "__main__":
    main()
