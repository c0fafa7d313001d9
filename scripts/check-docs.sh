#!/usr/bin/env bash
# Builds the DocC documentation with swift-docc-plugin and fails on
#   - a DocC warning or error in one of this package's targets (an unresolved link such as
#     ``GnuTLSError``, an undocumented or misnamed parameter, a broken article), and
#   - a public declaration of ours without a `///` comment (read from the symbol graphs the
#     plugin extracted: docc's own coverage report also counts inherited and synthesized
#     members, which have no comment of ours to add).
#
#   scripts/check-docs.sh        documents our targets only (--target each): about 4 min
#   scripts/check-docs.sh --all  the plain `swift package generate-documentation`, which
#                                also documents every dependency (about 8 min); their
#                                warnings are counted, not failed on: they are theirs.
#
# Not run by scripts/test.sh: both take more than 3 minutes on a 2-core machine.
# Exit status: 0 when our targets document cleanly, 1 otherwise (each finding is listed).
set -euo pipefail
cd "$(dirname "$0")/.."

ours=(GnuTLSCore GnuTLS GnuTLSAuthority NIOGnuTLS NIOGnuTLSAuthority tlsctl TestSupport TLSServiceFixture)
args=()
case "${1:-}" in
    --all) ;;
    "") for target in "${ours[@]}"; do args+=(--target "$target"); done ;;
    *) echo "usage: $0 [--all]" >&2; exit 2 ;;
esac

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "==> swift package generate-documentation ${args[*]}"
status=0
swift package generate-documentation "${args[@]}" >"$log" 2>&1 || status=$?

python3 - "$log" "$status" "${1:-}" "${ours[@]}" <<'PY'
import glob, json, os, re, sys

log_path, status, mode, ours = sys.argv[1], int(sys.argv[2]), sys.argv[3], set(sys.argv[4:])
root = os.getcwd()
lines = open(log_path, encoding="utf-8", errors="replace").read().splitlines()
# DocC names an article by its file name alone, a symbol's comment by its path relative to
# the package (ours: Sources/…, Tests/…; a dependency's: ../… or .build/…).
articles = {os.path.basename(path) for path in glob.glob("Sources/*/*.docc/**/*.md", recursive=True)}

def ours_at(location, message):
    """With --all, whether a diagnostic is in our targets (only ours are built otherwise).
    One without a location is ours when it names one of our targets (the plugin's own);
    the plugin's progress lines cannot place DocC's: they are buffered apart from them."""
    if mode != "--all":
        return True
    if location is None:
        return any(name in ours for name in re.findall(r"'([^']+)'", message))
    path = location.split(":")[0]
    if path.startswith(root + "/"):
        path = path[len(root) + 1:]
    return path.startswith(("Sources/", "Tests/")) or ("/" not in path and path in articles)

findings, theirs = [], 0
diagnostic = re.compile(r"^(warning|error): (.*)")
for index, line in enumerate(lines):
    match = diagnostic.match(line)
    if not match:
        continue
    following = lines[index + 1].strip() if index + 1 < len(lines) else ""
    location = following[3:].strip() if following.startswith("-->") else None
    if ours_at(location, match.group(2)):
        findings.append(f"{location or '(no location)'}: {match.group(1)}: {match.group(2)}")
    else:
        theirs += 1

if status != 0:
    print("\n".join(lines[-30:]))
    findings.append(f"swift package generate-documentation exited {status}")

# Public declarations without a doc comment, in the symbol graphs of our targets.
graphs = 0
for target in sorted(ours):
    for path in glob.glob(f".build/*/extracted-symbols/*/{target}/*.symbols.json"):
        graphs += 1
        for symbol in json.load(open(path, encoding="utf-8"))["symbols"]:
            uri = symbol.get("location", {}).get("uri", "")
            if not uri.startswith("file://" + root + "/") or "/.build/" in uri:
                continue
            if symbol.get("accessLevel") not in ("public", "open") or symbol.get("docComment"):
                continue
            file = uri[len("file://" + root + "/"):]
            line = symbol["location"]["position"]["line"] + 1
            name = ".".join(symbol["pathComponents"]) or symbol["names"]["title"]
            findings.append(f"{file}:{line}: public {symbol['kind']['displayName'].lower()} {name} has no /// comment")
if graphs == 0:
    findings.append("no symbol graph of our targets found under .build/*/extracted-symbols")

for finding in findings:
    print(finding)
if findings:
    print(f"check-docs: {len(findings)} problems in our targets (see above); {theirs} warnings in dependencies")
    sys.exit(1)
print(f"check-docs: no DocC warning and no undocumented public declaration in our targets "
      f"({graphs} symbol graphs read); {theirs} warnings in dependencies")
PY
