#!/usr/bin/env bash
# THE test command: installs the pinned S3 server and the Python reader venv (both cached,
# instant after the first run), builds the tests, starts `sluice broker` (the embedded tansu)
# and s3s-fs in a private run directory on free ports, runs
# `cargo test --workspace --locked "$@"` against them, and stops them again on any
# exit (success, failure, Ctrl-C). Without arguments, it then runs the benchmark harness's
# smoke mode (bench/run.py --smoke, its own private broker) and the offline checks of deploy/
# (scripts/check-deploy.sh). Exits non-zero if any fails.
#   scripts/test.sh                      # everything
#   scripts/test.sh -p sluice-lake -- e2e  # extra arguments go to cargo test
#   scripts/test.sh --busy [...]          # the same beside a CPU hog: one busy loop per core
#                                         # (SLUICE_TEST_BUSY=1 does the same), as on a loaded
#                                         # production host or a CI machine shared with a build
# Keeps the run directory (service logs) when the tests fail; removes it otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

busy=${SLUICE_TEST_BUSY:-0}
if [ "${1:-}" = --busy ]; then
  busy=1
  shift
fi

scripts/install-services.sh
scripts/python-env.sh
scripts/python-env.sh airflow
scripts/python-env.sh browser
scripts/python-env.sh glue

# Build first: the Kafka service is this build's `sluice broker`. Arguments before `--` select
# what cargo builds; `--no-run` with the same ones builds exactly what the run will use.
cargo_args=()
for arg in "$@"; do
  [ "$arg" = -- ] && break
  cargo_args+=("$arg")
done
cargo test --workspace --locked --no-run "${cargo_args[@]}"
[ -x "$SLUICE_BROKER_BIN" ] || cargo build --locked -p sluice --bin sluice

# A private run dir and ports per invocation, so that parallel clones do not collide.
SLUICE_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX")
export SLUICE_RUN_DIR
# s3s-fs logs every object it writes at debug: the plain-files test reads that log to check
# that no object is written twice.
export SLUICE_S3_LOG="${SLUICE_S3_LOG:-warn,s3s_fs=debug}"

status=  # cargo's exit status once it ran (or 130/143 on a signal)
hogs=()  # the busy loops of --busy
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$status" ] || status=$rc
  [ ${#hogs[@]} -eq 0 ] || kill "${hogs[@]}" 2>/dev/null || true
  scripts/services.sh stop || true
  if [ "$status" -eq 0 ]; then
    rm -rf "$SLUICE_RUN_DIR"
  else
    echo "test.sh: service logs kept in $SLUICE_RUN_DIR" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

# The default port when it is free, else one the kernel hands out.
port_free() { "$SLUICE_PYTHON" -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"; }
any_free_port() { "$SLUICE_PYTHON" -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Another clone may take the same port between the check and the bind: retry with a fresh one.
start_service() { # name env-var default-port
  local name=$1 var=$2 port=$3
  for _ in 1 2 3; do
    port_free "$port" || port=$(any_free_port)
    if env "$var=$port" scripts/services.sh start "$name"; then
      export "$var=$port"
      return 0
    fi
    port=$(any_free_port)
  done
  echo "test.sh: could not start $name (see $SLUICE_RUN_DIR/$name.log)" >&2
  return 1
}
start_service kafka SLUICE_KAFKA_PORT "${SLUICE_KAFKA_PORT:-19092}"
start_service s3 SLUICE_S3_PORT "${SLUICE_S3_PORT:-19000}"
eval "$(scripts/services.sh env)"

if [ "$busy" != 0 ]; then
  for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    hogs+=($!)
  done
  echo "test.sh: ${#hogs[@]} busy loops beside the tests (pids ${hogs[*]})"
fi

set +e
cargo test --workspace --locked "$@"
status=$?
if [ "$status" -eq 0 ] && [ $# -eq 0 ]; then
  # The benchmark harness on tiny inputs with the debug binary, so that it cannot rot
  # (figures from it mean nothing; BENCHMARKS.md has the real runs).
  SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice" "$SLUICE_PYTHON" bench/run.py --smoke
  status=$?
fi
if [ "$status" -eq 0 ] && [ $# -eq 0 ]; then
  # deploy/ checked offline: the Dockerfile, the compose file, the Kubernetes manifests.
  scripts/check-deploy.sh "$CARGO_TARGET_DIR/debug/sluice"
  status=$?
fi
set -e
exit "$status"
