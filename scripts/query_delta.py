#!/usr/bin/env python3
"""Independent SQL over a sluice Delta table, used by the Rust end-to-end tests as an oracle.

    query_delta.py TABLE_URI SQL

Reads the table with the Python `deltalake` package into Arrow and runs SQL on it with DuckDB
(neither is sluice's code); the table is named `t` in the SQL. Prints one JSON object per row
on stdout; timestamps as ISO 8601 text. Storage options for s3:// come from the environment,
as for check_delta.py.
"""

import json
import sys

import duckdb
from deltalake import DeltaTable

from check_delta import fail, storage_options


def main():
    if len(sys.argv) != 3:
        fail("usage: query_delta.py TABLE_URI SQL", code=2)
    uri, sql = sys.argv[1], sys.argv[2]
    try:
        t = DeltaTable(uri, storage_options=storage_options(uri)).to_pyarrow_table()
    except Exception as error:  # noqa: BLE001 - any reader failure is reported the same way
        fail(f"cannot read {uri}: {error}")
    connection = duckdb.connect()
    connection.register("t", t)
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    for row in cursor.fetchall():
        print(json.dumps(dict(zip(names, row)), default=str))


if __name__ == "__main__":
    main()
