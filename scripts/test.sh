#!/usr/bin/env bash
# Type-checks (tsc, strict) and runs the whole test suite with bun:test and ends with the plain summary line
# "N passed, N failed" that CI reads. Extra arguments go to `bun test`.
set -uo pipefail
cd "$(dirname "$0")/.."
# Type check first (fast): a type error fails the run like a failing test.
if [ $# -eq 0 ]; then
  if ! ./node_modules/.bin/tsc --noEmit -p .; then
    echo "0 passed, 1 failed"
    exit 1
  fi
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# 60 s per test for slow CI machines (tests start servers and child processes): Bun 1.4.5 ignores a
# timeout in bunfig.toml (a 6 s test failed at 5 s with one there, checked), so it is given here.
./node_modules/.bin/bun test --timeout 60000 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
failed=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed"
exit "$status"
