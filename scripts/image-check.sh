#!/usr/bin/env bash
# Builds a container image of this build's sluice without a registry or a Docker daemon, and
# runs it: Debian's buildah, from scratch, with the binary (stripped), exactly the shared
# libraries it links (ldd) and the CA certificates, as user 10001, as deploy/docker/Dockerfile's
# runtime stage has them. The Dockerfile itself needs its base images from Docker Hub, which
# this machine cannot reach; this checks what matters of its result: that the binary runs in a
# root filesystem holding only that, as a non-root user, and that its health check answers.
#   scripts/image-check.sh [SLUICE_BINARY]   # default: the debug build in the shared target dir
# Uses vfs storage and chroot isolation (no overlay, no user namespaces needed); removes what it
# made. Needs buildah (.ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
binary="${1:-$CARGO_TARGET_DIR/debug/sluice}"
image=localhost/sluice-image-check:latest
# The docker image format: OCI images have no HEALTHCHECK.
export BUILDAH_FORMAT=docker
buildah=(buildah --storage-driver vfs)
work=$(mktemp -d)
container=
cleanup() {
  [ -z "$container" ] || "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true
  "${buildah[@]}" rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The root filesystem: the binary, its libraries at the paths ldd resolves, CA certificates,
# a writable /tmp.
root="$work/root"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
strip -o "$root/usr/local/bin/sluice" "$binary"
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
# A file only root may read: reading it must fail, for the image runs as user 10001.
mkdir -m 700 "$root/root-only"
cp examples/sensor.toml "$root/root-only/"

container=$("${buildah[@]}" from scratch)
"${buildah[@]}" copy "$container" "$root" / >/dev/null
"${buildah[@]}" config --user 10001:10001 --workingdir /tmp \
  --entrypoint '["/usr/local/bin/sluice"]' --cmd '--help' \
  --env SLUICE_METRICS_LISTEN=0.0.0.0:9464 --env SLUICE_GATEWAY_LISTEN=0.0.0.0:8080 \
  --healthcheck 'CMD ["/usr/local/bin/sluice", "probe", "http://127.0.0.1:9464/healthz"]' \
  "$container"
"${buildah[@]}" commit --quiet --format docker "$container" "$image" >/dev/null
"${buildah[@]}" rm "$container" >/dev/null
container=$("${buildah[@]}" from "$image")

run() { "${buildah[@]}" run --isolation chroot "$container" -- "$@"; }
version=$(run /usr/local/bin/sluice --version)
expected="sluice $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
[ "$version" = "$expected" ] || { echo "image-check: got '$version', expected '$expected'" >&2; exit 1; }
probe=$(run /usr/local/bin/sluice probe http://127.0.0.1:1/healthz 2>&1 || true)
case "$probe" in
  *"no answer from http://127.0.0.1:1/healthz"*) ;;
  *) echo "image-check: the health check did not run as expected: $probe" >&2; exit 1 ;;
esac
as_user=$(run /usr/local/bin/sluice check --pipeline /root-only/sensor.toml 2>&1 || true)
case "$as_user" in
  *"Permission denied"*) ;;
  *) echo "image-check: the image does not run as a non-root user: $as_user" >&2; exit 1 ;;
esac
size=$("${buildah[@]}" images --format '{{.Size}}' "$image")
echo "image-check: $image ($size) runs '$version' as user 10001; its health check answers"
