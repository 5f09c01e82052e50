#!/usr/bin/env bash
# Times `.ci/run` as CI runs it on a fresh machine: a clean clone of HEAD (with ../shared beside
# it when there is one) under a fresh HOME, so that no cache is found — no ~/.cache (target dir,
# s3s-fs, the Python venv, pip's cache), no cargo registry. Only the Rust toolchain (rustup's)
# and the system packages stay.
#   scripts/ci-cold-time.sh           # cold: empty caches; the time at the end
#   scripts/ci-cold-time.sh --warm    # the same clean clone on this machine's own caches
# The run's output goes to <work dir>/ci.log; the work dir (several GiB when cold) is removed
# afterwards unless SLUICE_KEEP_COLD=1. Exits with .ci/run's status.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

warm=0
if [ "${1:-}" = --warm ]; then
  warm=1
  shift
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-ci-time.XXXXXX")
cleanup() { [ "${SLUICE_KEEP_COLD:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

git clone --quiet "$repo" "$work/main"
[ -d "$repo/../shared" ] && ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"

mode=warm
env=(CI=true)
if [ "$warm" = 0 ]; then
  mode=cold
  mkdir "$work/home"
  # The toolchain stays where rustup put it (its proxies on PATH find it through RUSTUP_HOME);
  # everything cargo and the scripts cache goes into the empty home. A CARGO_TARGET_DIR or
  # SLUICE_CACHE set by the caller would defeat the point.
  env=(-u CARGO_TARGET_DIR -u SLUICE_CACHE -u PIP_CACHE_DIR CI=true HOME="$work/home"
    RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="$work/home/.cargo")
fi

echo "ci-cold-time: $mode .ci/run of $(git -C "$repo" rev-parse --short HEAD) in $work (log: $work/ci.log)"
started=$(date +%s)
status=0
(cd "$work/main" && env "${env[@]}" bash .ci/run) >"$work/ci.log" 2>&1 </dev/null || status=$?
elapsed=$(($(date +%s) - started))
tail -n 5 "$work/ci.log"
printf 'ci-cold-time: %s .ci/run exited %d after %d min %02d s\n' "$mode" "$status" $((elapsed / 60)) $((elapsed % 60))
[ "$status" -eq 0 ] || cp "$work/ci.log" "${TMPDIR:-/tmp}/sluice-ci-time-failed.log"
exit "$status"
