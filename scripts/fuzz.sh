#!/usr/bin/env bash
# make fuzz: run every Go fuzz target of the module for FUZZTIME each.
# Targets are found, not listed: a new `func FuzzX(f *testing.F)` in any
# _test.go file is run without editing this script. A failure leaves the
# crashing input under the package's testdata/fuzz/ and fails the run.
set -euo pipefail
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-10s}"
cd "$(dirname "$0")/.."
n=0
while IFS=: read -r file name; do
  pkg="./$(dirname "$file")"
  echo "fuzz: $name in $pkg for $FUZZTIME"
  # Minimizing a new interesting input takes up to 60s by default, which
  # would eat a short run whole (0 execs/s): keep it short.
  "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "${FUZZMINIMIZETIME:-2s}" "$pkg"
  n=$((n + 1))
done < <(git ls-files -co --exclude-standard -- '*_test.go' | grep -v '^gen/' |
  xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/:func /:/' | sort -u)
if [ "$n" -eq 0 ]; then echo "fuzz: no fuzz targets found" >&2; exit 1; fi
echo "fuzz: $n targets ran for $FUZZTIME each"
