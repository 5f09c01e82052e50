#!/usr/bin/env bash
# Creates the Python virtualenv that the end-to-end tests use as an independent Delta reader
# (scripts/check_delta.py): deltalake, pyarrow and duckdb from PyPI, and the benchmark's
# contenders (bench/): pyspark (Spark Structured Streaming; needs Java 17) and confluent-kafka
# (a librdkafka consumer that is not sluice's), pinned, in
# $SLUICE_PYTHON's venv under the shared cache. A stamp file records what was installed, so a
# second run with the same pins returns at once; changing a pin (or the interpreter) rebuilds.
# Override the interpreter with SLUICE_BASE_PYTHON (default: python3 on PATH, >= 3.10).
set -euo pipefail
source "$(dirname "$0")/env.sh"

# Direct dependencies and their transitive ones, all pinned (checked on CPython 3.11, x86_64
# manylinux wheels: `pip download --only-binary=:all:` resolves exactly this set).
PINS=(
  deltalake==1.6.6
  pyarrow==26.0.1
  duckdb==2.0.0
  arro3-core==0.9.1
  deprecated==1.3.1
  wrapt==2.5.2
  typing-extensions==4.16.0
  pyspark==4.3.0
  py4j==0.10.9.9
  confluent-kafka==2.16.1
)

venv="$SLUICE_CACHE/venv"
base_python="${SLUICE_BASE_PYTHON:-python3}"
if ! command -v "$base_python" >/dev/null; then
  echo "python-env: $base_python not found (install python3, or set SLUICE_BASE_PYTHON)" >&2
  exit 1
fi
base_version=$("$base_python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
want="python=$base_version ${PINS[*]}"
stamp="$venv/.sluice-stamp"

if [ -x "$SLUICE_PYTHON" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && "$SLUICE_PYTHON" -c 'import deltalake, pyarrow, duckdb, pyspark, confluent_kafka' 2>/dev/null; then
  echo "python-env: $venv up to date"
  exit 0
fi

echo "python-env: creating $venv (python $base_version; ${PINS[*]})"
rm -rf "$venv"
mkdir -p "$SLUICE_CACHE"
if ! "$base_python" -m venv "$venv"; then
  rm -rf "$venv"
  echo "python-env: '$base_python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
  exit 1
fi
# --only-binary: never compile pyarrow/duckdb from source; fail clearly instead. pyspark is
# published as a source archive only (Python plus the Spark jars; nothing to compile).
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --only-binary=:all: --no-binary=pyspark "${PINS[@]}"; then
  rm -rf "$venv"
  echo "python-env: pip install failed" >&2
  exit 1
fi
"$venv/bin/python" -c 'import deltalake, pyarrow, duckdb, pyspark, confluent_kafka'
echo "$want" >"$stamp"
echo "python-env: ready: $SLUICE_PYTHON"
