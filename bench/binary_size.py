#!/usr/bin/env python3
"""What part of the release binary a set of crates costs.

    bench/binary_size.py [--release-dir DIR] [--prune CRATE]...

Attributes every function of the release binary (`nm -S`, sizes of the defined text symbols) to
the rlib of `DIR/deps` that defines the same mangled name (a generic function is counted in the
crate that instantiated it: arrow 58's readers used by the iceberg crate count as the iceberg
crate's), and each rlib to its crate and version (from its `.d` file). The crates the pruned
ones alone bring in are those `cargo tree -p sluice` lists only without `--prune`. Prints the
binary's sizes, what those crates cost, and the largest crates overall. Functions found in no
rlib (the standard library, C code such as librdkafka, SQLite and aws-lc) are reported apart.
Run it from the repository whose release build is in DIR (the default: $CARGO_TARGET_DIR/release).
"""

import argparse
import collections
import glob
import os
import re
import subprocess

DEFAULT_PRUNE = ["iceberg", "iceberg-catalog-rest", "sluice-iceberg"]


def crates(extra_args):
    out = subprocess.run(
        ["cargo", "tree", "-p", "sluice", "-e", "normal", "--prefix", "none", *extra_args],
        capture_output=True, text=True, check=True,
    ).stdout
    return {f"{line.split()[0]}-{line.split()[1].lstrip('v')}" for line in out.splitlines() if line}


def crate_of(deps, rlib):
    stem = os.path.basename(rlib)[len("lib"):-len(".rlib")]
    name = stem.rsplit("-", 1)[0]
    if name.startswith("sluice"):
        return name.replace("_", "-") + "-0.1.0"
    try:
        text = open(os.path.join(deps, stem + ".d")).read()
    except OSError:
        return name + "-?"
    found = re.search(r"/registry/src/[^/]+/([A-Za-z0-9_.+-]+?-\d+\.\d+\.\d+[^/]*)/", text)
    return found.group(1) if found else name + "-?"


def text_symbols(path):
    out = subprocess.run(["nm", "-S", "-P", "--defined-only", path],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in "TtWw" and not parts[0].endswith(":"):
            yield parts[0], int(parts[3], 16) if len(parts) >= 4 else 0


def main():
    parser = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--release-dir", default=os.path.join(target, "release"))
    parser.add_argument("--prune", action="append")
    args = parser.parse_args()
    prune = args.prune or DEFAULT_PRUNE
    deps = os.path.join(args.release_dir, "deps")
    binary = os.path.join(args.release_dir, "sluice")

    pruned_flags = [flag for crate in prune for flag in ("--prune", crate)]
    only = crates([]) - crates(pruned_flags) | {f"{crate}-0.1.0" for crate in prune}

    owner = {}
    for rlib in glob.glob(os.path.join(deps, "*.rlib")):
        crate = crate_of(deps, rlib)
        for symbol, _ in text_symbols(rlib):
            owner.setdefault(symbol, crate)

    sizes = collections.Counter()
    total = unknown = 0
    for symbol, size in text_symbols(binary):
        total += size
        crate = owner.get(symbol)
        if crate is None:
            unknown += size
        else:
            sizes[crate] += size

    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    stripped = subprocess.run(["size", "-A", binary], capture_output=True, text=True).stdout
    text = next(int(l.split()[1]) for l in stripped.splitlines() if l.startswith(".text"))
    print(f"binary {mb(os.path.getsize(binary))} on disk (symbols included), .text {mb(text)}")
    print(f"functions {mb(total)}: {mb(unknown)} in no rlib (std, C libraries)")
    cost = sum(size for crate, size in sizes.items() if crate in only)
    print(f"crates only {', '.join(prune)} bring in: {mb(cost)} ({cost / total:.1%} of functions)")
    for crate, size in sorted(((c, s) for c, s in sizes.items() if c in only), key=lambda cs: -cs[1]):
        if size >= 50_000:
            print(f"  {crate} {mb(size)}")
    print("largest crates:")
    for crate, size in sizes.most_common(10):
        print(f"  {crate} {mb(size)}")


if __name__ == "__main__":
    main()
