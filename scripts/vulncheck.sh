#!/usr/bin/env bash
# make lint: govulncheck against the Go vulnerability database.
#
# govulncheck needs the database: https://vuln.go.dev by default, or a local
# mirror with GOVULNDB=file:///path/to/vulndb. When the database cannot be
# reached (an offline machine: the Go module proxy may be reachable while
# vuln.go.dev is not), the check is SKIPPED with a loud message instead of
# failing every build, unless REQUIRE_VULNCHECK=1, which makes it an error
# (set it where the database is reachable, so that an outage cannot hide
# findings). Findings (exit status 3) always fail.
set -uo pipefail
bin="$1"
cd "$(dirname "$0")/.."
args=()
if [ -n "${GOVULNDB:-}" ]; then args+=(-db "$GOVULNDB"); fi
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
"$bin" "${args[@]}" ./... >"$out" 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then
  tail -n 3 "$out"
  echo "govulncheck: no known vulnerabilities reachable"
  exit 0
fi
if grep -qE 'fetching vulnerabilities|no such host|dial tcp|connection refused|i/o timeout|TLS handshake' "$out" && ! grep -q '^Vulnerability #' "$out"; then
  echo "################################################################" >&2
  echo "govulncheck: SKIPPED: the vulnerability database is unreachable:" >&2
  grep -m1 -E 'fetching vulnerabilities|dial tcp|no such host' "$out" >&2
  echo "No vulnerability check ran. Run 'make lint' where vuln.go.dev is" >&2
  echo "reachable, or set GOVULNDB=file:///path/to/mirror." >&2
  echo "REQUIRE_VULNCHECK=1 turns this skip into a failure." >&2
  echo "################################################################" >&2
  if [ "${REQUIRE_VULNCHECK:-0}" = "1" ]; then exit 1; fi
  exit 0
fi
cat "$out" >&2
exit "$rc"
