#!/usr/bin/env bash
# Checks that every ```swift code block of the DocC articles (Sources/*/*.docc/**/*.md)
# appears in the sources of Tests/DocSnippetTests, which compile and run them, so an
# article cannot show code that no longer compiles.
#
# A block matches when its lines, each stripped of leading and trailing white space and
# with blank lines dropped, appear as consecutive lines of one test source. `import`
# lines of a block must be imports of that same source (they sit at the top of the file,
# not next to the code). Exit status: 0 when every block matches, 1 otherwise (each
# unmatched block is named with its first line that differs).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - "$@" <<'PY'
import glob, os, re, sys

articles = sorted(glob.glob("Sources/*/*.docc/**/*.md", recursive=True))
sources = sorted(glob.glob("Tests/DocSnippetTests/**/*.swift", recursive=True))
if not sources:
    sys.exit("check-doc-snippets: no sources in Tests/DocSnippetTests")

def normalized(lines):
    return [line.strip() for line in lines if line.strip()]

tests = {path: normalized(open(path, encoding="utf-8").read().splitlines()) for path in sources}

def blocks(path):
    """(line number, lines) of every ```swift block of a Markdown file."""
    found, current, start = [], None, 0
    for number, line in enumerate(open(path, encoding="utf-8").read().splitlines(), 1):
        fence = line.strip()
        if current is None and re.fullmatch(r"```\s*swift\s*", fence):
            current, start = [], number
        elif current is not None and fence.startswith("```"):
            found.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        found.append((start, current))
    return found

def longest_prefix(body, lines):
    """How many leading lines of body appear consecutively somewhere in lines."""
    best = 0
    for i in range(len(lines)):
        n = 0
        while n < len(body) and i + n < len(lines) and lines[i + n] == body[n]:
            n += 1
        best = max(best, n)
        if best == len(body):
            break
    return best

checked, failures = 0, []
for article in articles:
    for start, block in blocks(article):
        checked += 1
        lines = normalized(block)
        imports = [l for l in lines if re.fullmatch(r"import\s+\w+", l)]
        body = [l for l in lines if l not in imports]
        def holds(path):
            return all(i in tests[path] for i in imports) and longest_prefix(body, tests[path]) == len(body)
        if any(holds(path) for path in sources):
            continue
        # Name the closest source and the first line of the block it lacks.
        closest = max(sources, key=lambda p: longest_prefix(body, tests[p]))
        matched = longest_prefix(body, tests[closest])
        missing = [i for i in imports if i not in tests[closest]]
        if matched == len(body) and missing:
            reason = f"{closest} lacks {missing[0]!r}"
        else:
            reason = f"first line not found (closest: {closest}): {body[matched] if body else ''!r}"
        failures.append(f"{article}:{start}: block not in Tests/DocSnippetTests: {reason}")

for failure in failures:
    print(failure, file=sys.stderr)
print(f"check-doc-snippets: {checked - len(failures)} of {checked} swift blocks in {len(articles)} articles found in {len(sources)} test sources")
sys.exit(1 if failures else 0)
PY
