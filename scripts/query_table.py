#!/usr/bin/env python3
"""Independent SQL over a sluice table, used by the Rust end-to-end tests as an oracle.

    query_table.py TABLE SQL

TABLE is one of:
  * a Delta table's URI, read with the Python `deltalake` package;
  * `parquet:URI`, a plain-files Parquet table, read with pyarrow's dataset reader as a
    Hive-style reader sees it (paths starting with `_` or `.` skipped, `date=`/`hour=` from
    the path, the objects' columns merged);
  * `iceberg:CATALOG_DB#CATALOG#NAMESPACE.TABLE`, an Iceberg table read with pyiceberg's own
    SqlCatalog over the SQLite file and its scan.

None of these readers is sluice's code. The rows go into DuckDB as the table `t`, and the SQL
runs there. Prints one JSON object per row on stdout; timestamps as ISO 8601 text. For s3://
the store is reached with the AWS_* variables (`scripts/services.sh env`).
"""

import json
import sys

import duckdb

from check_delta import fail, storage_options


def read_delta(uri):
    from deltalake import DeltaTable

    return DeltaTable(uri, storage_options=storage_options(uri)).to_pyarrow_table()


def read_parquet_files(uri):
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from check_files import filesystem, visible_objects

    fs, root = filesystem(uri)
    paths = [path for path, _ in visible_objects(fs, root, uri)]
    # Hive partitioning: `hour=9` comes back as the integer 9, `date=…` as text.
    hive = dict(filesystem=fs, format="parquet", partitioning="hive", partition_base_dir=root)
    found = ds.dataset(paths, **hive)
    if not paths:
        return found.to_table()
    # Objects written before the table gained a column lack it: every object is read with the
    # union of their columns (null where one lacks a column), as a crawler's merged schema.
    columns = pa.unify_schemas([pq.read_schema(path, filesystem=fs) for path in paths])
    return ds.dataset(paths, schema=pa.unify_schemas([columns, found.schema]), **hive).to_table()


def read_iceberg(spec):
    from check_iceberg import catalog

    catalog_db, name, table = spec.split("#")
    return catalog(catalog_db, name, warehouse="").load_table(table).scan().to_arrow()


def read(table):
    if table.startswith("parquet:"):
        return read_parquet_files(table.removeprefix("parquet:"))
    if table.startswith("iceberg:"):
        return read_iceberg(table.removeprefix("iceberg:"))
    return read_delta(table)


def main():
    if len(sys.argv) != 3:
        fail("usage: query_table.py TABLE SQL", code=2)
    table, sql = sys.argv[1], sys.argv[2]
    try:
        t = read(table)
    except Exception as error:  # noqa: BLE001 - any reader failure is reported the same way
        fail(f"cannot read {table}: {error}")
    connection = duckdb.connect()
    connection.register("t", t)
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    for row in cursor.fetchall():
        print(json.dumps(dict(zip(names, row)), default=str))


if __name__ == "__main__":
    main()
