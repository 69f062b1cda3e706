#!/usr/bin/env bash
# The whole test suite: set-up, then every test under Bazel, then one line per CMocka test and a
# closing "N passed, N failed" line. Extra arguments go to bazel (e.g. --config=asan).
# Exit status: non-zero if any test failed or did not build.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
bazel test --keep_going "$@" //... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
testlogs=$(bazel info "$@" bazel-testlogs 2>/dev/null)
scripts/summarize.sh "$testlogs" "$log" "${LC_TEST_LABEL:-$*}"
src=$?
[ "$rc" -eq 0 ] && [ "$src" -eq 0 ]
