#!/usr/bin/env python3
"""Polars converting NDJSON to zstd Parquet with the sensor schema, for bench/run.py.

    polars_convert.py INPUT.ndjson OUTPUT.parquet

A lazy scan sunk to one file (Polars' streaming engine, multi-threaded Rust), `ts` parsed to
UTC microseconds as sluice and DuckDB store it. Prints the rows written as JSON.
"""

import json
import sys

import polars as pl

SCHEMA = {"device_id": pl.String, "ts": pl.String, "temperature_c": pl.Float64,
          "vibration_g": pl.Float64, "status": pl.String, "site": pl.String, "line": pl.String}


def main():
    source, out = sys.argv[1], sys.argv[2]
    (pl.scan_ndjson(source, schema=SCHEMA)
     .with_columns(pl.col("ts").str.to_datetime(time_unit="us", time_zone="UTC"))
     .sink_parquet(out, compression="zstd"))
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
