#!/usr/bin/env python3
"""Where a sluice process's CPU time goes, from a `perf record` profile (for BENCHMARKS.md).

    perf record -F 999 -o perf.data sluice load --pipeline job.toml sensor-1000000.ndjson
    perf_summary.py perf.data [--top 15]

Sums `perf report`'s self time per symbol into the stages of the engine, by the crate or
library the symbol comes from (the patterns below), and prints a Markdown table of the stages
and of the hottest symbols. Self time only: a libc `memcmp` or `malloc` counts as
"allocation and copying (libc)" whoever called it, since release builds have no frame pointers.
"""

import argparse
import re
import subprocess
import sys
from collections import defaultdict

# (stage, pattern over "dso symbol"), first match wins.
STAGES = [
    ("JSON → Arrow decode (serde_json, sluice_core::decode)",
     r"serde_json|sluice_core::decode|serde_core|lexical|rfc3339|from_utf8|memchr"),
    ("Parquet encoding and zstd (parquet, ZSTD_*)", r"parquet::|ZSTD_|HUF_|HIST_|FSE_|zstd"),
    ("windows (DataFusion accumulators, sluice windows)",
     r"datafusion|sluice_core::windows|sluice_engine::windows|GroupValues|Accumulator"),
    ("rules and filters (Arrow compute)", r"arrow_(ord|select|arith|cast|string|row)|arrow::compute|sluice_core::expr"),
    ("Delta commits and object store", r"deltalake|delta_kernel|object_store"),
    ("Kafka client (librdkafka)", r"rdkafka|rd_kafka|librdkafka"),
    ("allocation and copying (libc)", r"libc\.so|malloc|free|memcpy|memmove|memset|memcmp|realloc"),
    ("kernel", r"\[kernel|\[k\]"),
    ("Arrow arrays and buffers", r"arrow"),
    ("hashing", r"ahash|hashbrown|hash_one"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("perf_data")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    report = subprocess.run(
        ["perf", "report", "-i", args.perf_data, "--no-children", "--sort", "dso,symbol",
         "--stdio", "-g", "none", "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    rows = []
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(\[.\])\s+(.*?)\s*$", line)
        if m:
            symbol = re.split(r"\s{2,}", m.group(4))[0]
            rows.append((float(m.group(1)), f"{m.group(2)} {m.group(3)} {symbol}"))
    if not rows:
        sys.exit(f"perf_summary: no samples in {args.perf_data}")
    stages = defaultdict(float)
    for share, name in rows:
        stage = next((s for s, pattern in STAGES if re.search(pattern, name)), "other")
        stages[stage] += share
    print("| stage (self time) | share of CPU samples |\n|---|---:|")
    for stage, share in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {share:.1f}% |")
    print(f"\n| hottest symbols | share |\n|---|---:|")
    for share, name in sorted(rows, reverse=True)[:args.top]:
        symbol = name.split(" ", 2)[2][:90].replace("|", "\\|")
        print(f"| `{symbol}` | {share:.1f}% |")


if __name__ == "__main__":
    main()
