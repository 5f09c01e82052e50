#!/usr/bin/env bash
# Installs the dev service that the tests and benchmarks run against besides sluice itself,
# pinned, into a cache directory shared by every clone: a second run finds it and returns at
# once. (The Kafka broker is `sluice broker`, built with sluice.)
#   s3s-fs — S3-compatible server over a directory (crates.io, --features binary)
# Prints nothing but progress; exits non-zero if a build fails.
set -euo pipefail
source "$(dirname "$0")/env.sh"

install_crate() { # name version features
  local name=$1 version=$2 features=$3 root="$SLUICE_TOOLS/$1-$2"
  if [ -x "$root/bin/$name" ]; then
    echo "install-services: $name $version already in $root"
    return
  fi
  echo "install-services: building $name $version (features: $features) into $root"
  # A private target dir: these crates share nothing with the workspace, and a failed build
  # leaves no half-installed binary behind (cargo install writes bin/ only on success).
  cargo install --locked --quiet "$name" --version "=$version" --features "$features" \
    --root "$root" --target-dir "$SLUICE_CACHE/build-$name"
  rm -rf "$SLUICE_CACHE/build-$name"
}

install_crate s3s-fs "$S3S_FS_VERSION" binary
