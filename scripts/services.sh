#!/usr/bin/env bash
# Starts and stops the local dev services that the tests and benchmarks run against, on
# 127.0.0.1, with pid files and logs in a run directory:
#   kafka — `sluice broker` (tansu, embedded)    port $SLUICE_KAFKA_PORT (default 19092)
#   s3    — s3s-fs (S3 over a directory)         port $SLUICE_S3_PORT    (default 19000)
#   tls   — stunnel4, TLS in front of kafka      port $SLUICE_TLS_PORT   (default 19093)
#           (only when named: tansu has no TLS listener of its own). Its certificate, for
#           localhost and 127.0.0.1, is signed by a test CA made with openssl on first start:
#           $SLUICE_RUN_DIR/tls/ca.pem. Start kafka with SLUICE_KAFKA_ADVERTISE=localhost:<tls
#           port> first, so that clients are sent back to the TLS port.
#
#   scripts/services.sh start|stop|restart|status [kafka|s3]...   (no name: both)
#   scripts/services.sh env       # export lines for the running services; eval "$(… env)"
#
# Settings (environment):
#   SLUICE_RUN_DIR        run directory (default $SLUICE_CACHE/run): <svc>.pid, <svc>.log,
#                         <svc>.port, the s3 root (s3/, bucket "lake" = s3/lake/)
#   SLUICE_KAFKA_ADVERTISE  `sluice broker --advertise` (default: its listen address)
#   SLUICE_KAFKA_SASL_USERS  `sluice broker --sasl-user`: "NAME:PASSWORD,…" (SCRAM-SHA-256/512;
#                         needs SLUICE_TANSU_STORAGE=sqlite://…)
#   SLUICE_KAFKA_PORT, SLUICE_S3_PORT, SLUICE_TLS_PORT   ports used by `start`; a running service keeps the
#                         port recorded in <svc>.port, and `restart` reuses it
#   SLUICE_BIN            the sluice binary that serves `kafka` (default: the debug build,
#                         $CARGO_TARGET_DIR/debug/sluice; build it first)
#   SLUICE_TANSU_STORAGE  `sluice broker --storage` (default memory://tansu/: lost on stop).
#                         For a broker that keeps its topics across `restart kafka`, use
#                         sqlite://tansu.db — tansu resolves a sqlite URL's host+path against
#                         its working directory, which is the run dir, so that is
#                         $SLUICE_RUN_DIR/tansu.db (an absolute sqlite:///x/y also lands
#                         under the run dir, as <run>/x/y).
#   SLUICE_SERVICE_TIMEOUT  seconds to wait for a port to open (default 30)
#   SLUICE_KAFKA_LOG, SLUICE_S3_LOG  the services' log filters (SLUICE_LOG of the broker,
#                         RUST_LOG of s3s-fs; default warn, and s3s_fs=info)
#
# start and stop are idempotent. start fails (printing the log tail) if a service does not
# accept connections in time or exits; stop sends SIGTERM, waits, then SIGKILL. status exits 0
# when every named service runs, 3 otherwise.
set -euo pipefail
source "$(dirname "$0")/env.sh"

SERVICES_SH="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
RUN="${SLUICE_RUN_DIR:-$SLUICE_CACHE/run}"
HOST=127.0.0.1
TIMEOUT="${SLUICE_SERVICE_TIMEOUT:-30}"
TANSU_STORAGE="${SLUICE_TANSU_STORAGE:-memory://tansu/}"
# The services' log filters: their own settings, not the caller's (tests may set RUST_LOG=debug).
KAFKA_LOG="${SLUICE_KAFKA_LOG:-warn}"
S3_LOG="${SLUICE_S3_LOG:-warn,s3s_fs=info}"
S3_ACCESS_KEY=sluice
S3_SECRET_KEY=sluice-secret
S3_BUCKET=lake
ALL=(kafka s3)

say() { echo "services: $*"; }
die() { echo "services: $*" >&2; exit 1; }

bin_of() {
  case $1 in
    kafka) echo "$SLUICE_BROKER_BIN" ;;
    s3) echo "$S3S_FS_BIN" ;;
    tls) command -v stunnel4 || command -v stunnel || echo /usr/bin/stunnel4 ;;
  esac
}

# The port a service uses: the recorded one while it runs (or for restart), else the setting.
configured_port() {
  case $1 in
    kafka) echo "${SLUICE_KAFKA_PORT:-19092}" ;;
    s3) echo "${SLUICE_S3_PORT:-19000}" ;;
    tls) echo "${SLUICE_TLS_PORT:-19093}" ;;
  esac
}

# A test CA and a server certificate for localhost and 127.0.0.1 signed by it, in $RUN/tls.
make_tls_files() {
  local dir="$RUN/tls"
  [ -s "$dir/server.pem" ] && return 0
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=sluice-test-ca \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key \
      -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -days 30 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -extfile server.ext -out server.pem 2>/dev/null
  ) || die "tls: could not make the test certificates with openssl in $dir"
}

recorded_port() {
  local f="$RUN/$1.port"
  if [ -s "$f" ]; then cat "$f"; else configured_port "$1"; fi
}

# Is the process alive? A zombie (exited, not yet reaped by its new parent) counts as dead.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# Prints the pid if the pid file names a live process running this service's binary.
running_pid() {
  local pidfile="$RUN/$1.pid" pid cmd
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  # Guard against a recycled pid: the process must be our binary.
  if [ -r "/proc/$pid/cmdline" ]; then
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  else
    cmd=$(ps -p "$pid" -o args= 2>/dev/null || true)
  fi
  [[ $cmd == *"$(bin_of "$1")"* ]] || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Does process $1 listen on port $2? On Linux, by the socket inodes in /proc (so that a port
# taken by someone else does not pass for ours); elsewhere, by connecting.
owns_port() {
  local pid=$1 port=$2 inodes fd link
  if [ ! -r /proc/net/tcp ] || [ ! -d "/proc/$pid/fd" ]; then
    port_open "$port"
    return
  fi
  inodes=$(awk -v p="$(printf ':%04X' "$port")" \
    '$4 == "0A" && substr($2, length($2) - 4) == p { printf " %s ", $10 }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null || true)
  [ -n "$inodes" ] || return 1
  for fd in "/proc/$pid/fd/"*; do
    link=$(readlink "$fd" 2>/dev/null) || continue
    [[ $link == socket:\[*\] ]] || continue
    link=${link#socket:[}
    [[ $inodes == *" ${link%]} "* ]] && return 0
  done
  return 1
}

log_tail() {
  echo "services: last lines of $1:" >&2
  tail -n 30 "$1" 2>/dev/null | sed 's/^/  | /' >&2 || true
}

start_one() {
  local name=$1 port=${2:-} bin pid log="$RUN/$1.log" waited=0
  bin=$(bin_of "$name")
  if pid=$(running_pid "$name"); then
    say "$name already running (pid $pid, $HOST:$(recorded_port "$name"))"
    return 0
  fi
  if [ ! -x "$bin" ]; then
    [ "$name" = kafka ] && die "kafka: $bin not found; build it first (cargo build -p sluice) or set SLUICE_BIN"
    [ "$name" = tls ] && die "tls: stunnel4 not found (apt-get install stunnel4)"
    die "$name: $bin not found; run scripts/install-services.sh first"
  fi
  [ -n "$port" ] || port=$(configured_port "$name")
  if port_open "$port"; then
    die "$name: port $HOST:$port is already in use by another process (set SLUICE_$( \
      echo "$name" | tr a-z A-Z)_PORT to another port, or stop it)"
  fi
  mkdir -p "$RUN"
  echo "=== $(date -u +%FT%TZ) start $name on $HOST:$port" >>"$log"
  case $name in
    kafka)
      # Working directory = run dir: tansu resolves sqlite://NAME relative to it.
      (cd "$RUN" && SLUICE_LOG="$KAFKA_LOG" NO_COLOR=1 exec "$bin" broker \
        --listen "$HOST:$port" --storage "$TANSU_STORAGE" \
        ${SLUICE_KAFKA_ADVERTISE:+--advertise "$SLUICE_KAFKA_ADVERTISE"} \
        ${SLUICE_KAFKA_SASL_USERS:+--sasl-user "$SLUICE_KAFKA_SASL_USERS"}) </dev/null >>"$log" 2>&1 &
      ;;
    tls)
      running_pid kafka >/dev/null || die "tls: start kafka first (it forwards to kafka's port)"
      make_tls_files
      cat >"$RUN/tls/stunnel.conf" <<CONF
foreground = yes
pid =
[kafka]
accept = $HOST:$port
connect = $HOST:$(recorded_port kafka)
cert = $RUN/tls/server.pem
key = $RUN/tls/server.key
CONF
      (exec "$bin" "$RUN/tls/stunnel.conf") </dev/null >>"$log" 2>&1 &
      ;;
    s3)
      # A bucket in s3s-fs is a directory under its root.
      mkdir -p "$RUN/s3/$S3_BUCKET"
      (RUST_LOG="$S3_LOG" NO_COLOR=1 exec "$bin" \
        --host "$HOST" --port "$port" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
        "$RUN/s3") </dev/null >>"$log" 2>&1 &
      ;;
  esac
  pid=$!
  echo "$pid" >"$RUN/$name.pid"
  echo "$port" >"$RUN/$name.port"
  while :; do
    if ! alive "$pid"; then
      rm -f "$RUN/$name.pid" "$RUN/$name.port"
      log_tail "$log"
      die "$name exited during startup (see $log)"
    fi
    owns_port "$pid" "$port" && break
    if [ "$waited" -ge $((TIMEOUT * 10)) ]; then
      log_tail "$log"
      stop_one "$name" >/dev/null
      die "$name did not open $HOST:$port within ${TIMEOUT}s (see $log)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  say "$name started (pid $pid, $HOST:$port, log $log)"
}

stop_one() {
  local name=$1 pid i
  if ! pid=$(running_pid "$name"); then
    rm -f "$RUN/$name.pid" "$RUN/$name.port"
    say "$name not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do # 10 s
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    say "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
  fi
  alive "$pid" && die "$name (pid $pid) would not die"
  rm -f "$RUN/$name.pid" "$RUN/$name.port"
  say "$name stopped (pid $pid)"
}

restart_one() {
  local port
  port=$(recorded_port "$1") # keep the port clients were given
  stop_one "$1"
  start_one "$1" "$port"
}

status_one() {
  local pid
  if pid=$(running_pid "$1"); then
    echo "$1: running (pid $pid, $HOST:$(recorded_port "$1"), log $RUN/$1.log)"
  else
    echo "$1: stopped"
    return 3
  fi
}

print_env() {
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q SLUICE_TEST_BROKERS "$HOST:$(recorded_port kafka)"
  q AWS_ENDPOINT_URL "http://$HOST:$(recorded_port s3)"
  q AWS_ACCESS_KEY_ID "$S3_ACCESS_KEY"
  q AWS_SECRET_ACCESS_KEY "$S3_SECRET_KEY"
  q AWS_REGION us-east-1
  q AWS_ALLOW_HTTP true
  q SLUICE_TEST_S3_BUCKET "$S3_BUCKET"
  q SLUICE_TEST_PYTHON "$SLUICE_PYTHON"
  # So that a test can run `$SLUICE_SERVICES restart kafka` against these same services.
  q SLUICE_SERVICES "$SERVICES_SH"
  q SLUICE_RUN_DIR "$RUN"
  q SLUICE_KAFKA_PORT "$(recorded_port kafka)"
  q SLUICE_S3_PORT "$(recorded_port s3)"
  q SLUICE_TANSU_STORAGE "$TANSU_STORAGE"
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SERVICES_SH" >&2
  exit 2
}

cmd=${1:-}
[ $# -gt 0 ] && shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
for n in "${names[@]}"; do
  case $n in
    kafka | s3 | tls) ;;
    *) echo "services: unknown service '$n' (kafka, s3, tls)" >&2; usage ;;
  esac
done

case $cmd in
  start) for n in "${names[@]}"; do start_one "$n"; done ;;
  stop) for n in "${names[@]}"; do stop_one "$n"; done ;;
  restart) for n in "${names[@]}"; do restart_one "$n"; done ;;
  status)
    rc=0
    for n in "${names[@]}"; do status_one "$n" || rc=3; done
    exit $rc
    ;;
  env) print_env ;;
  *) usage ;;
esac
