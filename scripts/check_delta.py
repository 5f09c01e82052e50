#!/usr/bin/env python3
"""Independent reader of a sluice Delta table, used by the Rust end-to-end tests.

    check_delta.py TABLE_URI

Reads the table with the Python `deltalake` package (delta-rs's Python binding, not sluice's
code) and prints ONE JSON object on stdout:

    {"rows": N, "version": V, "files": F,
     "partitions": {"<kafka _partition>": {"count": n, "min_offset": a, "max_offset": b,
                                          "distinct_offsets": d}},
     "partition_dirs_match": true|false, "mismatched_dirs": ["<up to 5 examples>"]}

The table has columns `_partition` (int32), `_offset` (int64), `ts` (timestamp, UTC) and the
Delta partition columns `date` (date) and `hour` (int32). `partition_dirs_match` is true when
every row's date/hour are ts's UTC date/hour, and every data file's path contains
`date=<date>/hour=<hour>/` for the partition values its add action records.

For s3:// URIs the storage options come from the standard variables: AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (default us-east-1), AWS_ALLOW_HTTP
(default true when the endpoint is http://). `scripts/services.sh env` prints them for the
local s3s-fs. Exits non-zero, with the reason on stderr, when the table cannot be read.
"""

import json
import os
import sys
import urllib.parse

MAX_EXAMPLES = 5


def fail(message, code=1):
    print(f"check_delta: {message}", file=sys.stderr)
    sys.exit(code)


def storage_options(uri):
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme not in ("s3", "s3a"):
        return None
    options = {}
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ALLOW_HTTP"):
        value = os.environ.get(key)
        if value:
            options[key] = value
    options.setdefault("AWS_REGION", "us-east-1")
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options.setdefault("AWS_ALLOW_HTTP", "true")
    # Reading needs no locking/conditional-put option; path-style addressing is object_store's
    # default when an endpoint is given.
    return options


def check(uri):
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    try:
        dt = DeltaTable(uri, storage_options=storage_options(uri))
        version = dt.version()
        adds = pa.table(dt.get_add_actions(flatten=True))
        data = dt.to_pyarrow_table(columns=["_partition", "_offset", "ts", "date", "hour"])
    except Exception as e:  # noqa: BLE001 — any failure to read is the answer
        fail(f"cannot read Delta table {uri}: {type(e).__name__}: {e}")

    # ts as naive UTC wall-clock time: a tz-aware timestamp is stored as UTC, so dropping the
    # zone keeps the instant; a timestamp_ntz column is taken as UTC already.
    ts = data.column("ts")
    if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
        ts = pc.cast(ts, pa.timestamp(ts.type.unit))
    rows_tbl = pa.table({
        "p": data.column("_partition"), "o": data.column("_offset"), "ts": ts,
        "date": data.column("date"), "hour": data.column("hour"),
    })

    con = duckdb.connect()
    con.register("t", rows_tbl)
    partitions = {}
    for p, n, lo, hi, d in con.execute(
        "SELECT p, count(*), min(o), max(o), count(DISTINCT o) FROM t GROUP BY p ORDER BY p"
    ).fetchall():
        partitions[str(p)] = {"count": n, "min_offset": lo, "max_offset": hi,
                              "distinct_offsets": d}

    mismatched = []
    # Rows whose partition values are not ts's UTC date/hour (or are null).
    (bad_rows,) = con.execute("""
        SELECT count(*) FROM t
        WHERE date IS DISTINCT FROM CAST(ts AS DATE) OR hour IS DISTINCT FROM hour(ts)
    """).fetchone()
    if bad_rows:
        for date, hour, t, n in con.execute(f"""
            SELECT date, hour, min(ts), count(*) FROM t
            WHERE date IS DISTINCT FROM CAST(ts AS DATE) OR hour IS DISTINCT FROM hour(ts)
            GROUP BY date, hour, CAST(ts AS DATE), hour(ts) ORDER BY 3 LIMIT {MAX_EXAMPLES}
        """).fetchall():
            mismatched.append(f"{n} row(s) in date={date}/hour={hour} with ts "
                              f"{t.isoformat() if t else None}Z")

    # Files whose path does not sit under the directory of their recorded partition values.
    bad_files = 0
    names = adds.column_names
    if "partition.date" not in names or "partition.hour" not in names:
        bad_files = adds.num_rows or 1
        mismatched.append(f"add actions carry no date/hour partition values (columns: {names})")
    else:
        for path, date, hour in zip(adds.column("path").to_pylist(),
                                    adds.column("partition.date").to_pylist(),
                                    adds.column("partition.hour").to_pylist()):
            want = f"date={date}/hour={hour}/"
            if date is None or hour is None or want not in urllib.parse.unquote(path):
                bad_files += 1
                if len(mismatched) < MAX_EXAMPLES:
                    mismatched.append(f"file {path} has partition values date={date} hour={hour}")

    return {
        "rows": data.num_rows,
        "version": version,
        "files": adds.num_rows,
        "partitions": partitions,
        "partition_dirs_match": bad_rows == 0 and bad_files == 0,
        "mismatched_dirs": mismatched[:MAX_EXAMPLES],
    }


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        result = check(argv[1])
    except SystemExit:
        raise
    except ImportError as e:
        fail(f"{e}: run me with the venv python of scripts/python-env.sh "
             f"($SLUICE_PYTHON, ~/.cache/sluice/venv/bin/python)")
    except Exception as e:  # noqa: BLE001
        fail(f"checking {argv[1]} failed: {type(e).__name__}: {e}")
    print(json.dumps(result, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
