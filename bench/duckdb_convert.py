#!/usr/bin/env python3
"""DuckDB converting NDJSON to zstd Parquet with the sensor schema, for bench/run.py.

    duckdb_convert.py INPUT.ndjson OUTPUT.parquet

Prints the rows written as JSON.
"""

import json
import sys

import duckdb

COLUMNS = ("{device_id: 'VARCHAR', ts: 'TIMESTAMPTZ', temperature_c: 'DOUBLE', "
           "vibration_g: 'DOUBLE', status: 'VARCHAR', site: 'VARCHAR', line: 'VARCHAR'}")


def main():
    source, out = sys.argv[1], sys.argv[2]
    connection = duckdb.connect()
    connection.execute(f"COPY (SELECT * FROM read_json('{source}', format = 'newline_delimited', "
                       f"columns = {COLUMNS})) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    rows = connection.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
