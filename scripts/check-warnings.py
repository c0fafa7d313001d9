#!/usr/bin/env python3
"""Fails (exit 1) when the last build of the package's own Swift sources left a warning.

Usage: check-warnings.py BIN_PATH REPO_ROOT  (BIN_PATH from `swift build --show-bin-path`)

Reads the serialized diagnostics (`.dia`) the Swift compiler writes for every source file
it compiles, as listed in each module's `output-file-map.json`. A file that an incremental
build did not recompile keeps the `.dia` of its last compilation, so a warning is seen on
every run until the source is fixed, not only on the build that compiled it. Files outside
the repository's own Sources/, Tests/ and Benchmarks/ (dependencies) are not looked at.

A `.dia` without diagnostics holds no text; one with diagnostics holds the file names and
messages as plain strings, which are printed. After a successful build, every diagnostic
left is a warning (or a note attached to one).
"""
import glob
import json
import os
import re
import sys


def texts(path):
    """The printable runs of 6 or more characters in a .dia file (file names, messages)."""
    with open(path, "rb") as handle:
        data = handle.read()
    return [match.decode("utf-8", "replace") for match in re.findall(rb"[\x20-\x7e]{6,}", data)]


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    bin_path, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    own = tuple(os.path.join(root, part) + os.sep for part in ("Sources", "Tests", "Benchmarks"))
    maps = glob.glob(os.path.join(bin_path, "*.build", "output-file-map.json"))
    if not maps:
        print(f"check-warnings: no output-file-map.json under {bin_path}: was the package built?", file=sys.stderr)
        return 2
    found = []
    checked = 0
    for file_map in sorted(maps):
        with open(file_map) as handle:
            entries = json.load(handle)
        for source, outputs in entries.items():
            # Dependencies checked out into a build folder (.build, a --scratch-path .build-x).
            if not source.startswith(own) or any(part.startswith(".build") for part in source[len(root):].split(os.sep)):
                continue
            diagnostics = outputs.get("diagnostics")
            if not diagnostics or not os.path.exists(diagnostics):
                continue
            checked += 1
            strings = texts(diagnostics)
            if strings:
                found.append((source, strings))
    if found:
        print(f"error: the package's own sources have compiler warnings ({len(found)} file(s)); zero are allowed:")
        for source, strings in found:
            print(f"  {os.path.relpath(source, root)}:")
            for text in strings:
                print(f"    {text}")
        return 1
    print(f"==> No compiler warnings in the package's own sources ({checked} files checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
