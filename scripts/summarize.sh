#!/usr/bin/env bash
# summarize.sh TESTLOGS_DIR BAZEL_OUTPUT_LOG [LABEL]
# Prints "PASS|FAIL <target> <test>" for every CMocka test in every test target that Bazel
# reported, a FAIL line for a target that failed without any CMocka result (did not build,
# crashed before its first test, timed out), and a closing "N passed, N failed" line.
# Appends the counts to $LC_SUMMARY_FILE when set. Exit status 1 if anything failed.
set -uo pipefail
testlogs=$1
log=$2
label=${3:-}
passed=0
failed=0
while read -r target status; do
    pkg=${target#//}
    pkg=${pkg%%:*}
    name=${target##*:}
    tlog="$testlogs/$pkg/$name/test.log"
    results=""
    if [ -f "$tlog" ] && [ "$status" != "FAILED TO BUILD" ] && [ "$status" != "NO STATUS" ]; then
        results=$(awk -v t="$target" '
            /^\[ RUN      \] / { if (cur != "") print "FAIL " t " " cur; cur = $4; next }
            /^\[       OK \] / { if ($4 == cur) { print "PASS " t " " cur; cur = "" }; next }
            /^\[  FAILED  \] / { if ($4 == cur) { print "FAIL " t " " cur; cur = "" }; next }
            END { if (cur != "") print "FAIL " t " " cur " (crashed or timed out)" }' "$tlog")
    fi
    if [ -n "$results" ]; then
        echo "$results" | sed "s/^/${label:+[$label] }/"
        p=$(grep -c '^PASS' <<<"$results")
        f=$(grep -c '^FAIL' <<<"$results")
        passed=$((passed + p))
        failed=$((failed + f))
        # A target that failed although each of its tests passed (a leak found at exit, say).
        if [ "$f" -eq 0 ] && [ "$status" != "PASSED" ]; then
            echo "${label:+[$label] }FAIL $target (exited with failure: $status)"
            failed=$((failed + 1))
        fi
    elif [ "$status" = "PASSED" ]; then
        echo "${label:+[$label] }PASS $target"
        passed=$((passed + 1))
    else
        echo "${label:+[$label] }FAIL $target ($status)"
        failed=$((failed + 1))
    fi
done < <(sed -nE 's/^(\/\/[^ ]+) +(\(cached\) )?(PASSED|FAILED TO BUILD|FAILED|TIMEOUT|NO STATUS|FLAKY|INCOMPLETE|REMOTE FAILURE).*/\1 \3/p' "$log")
if [ -n "${LC_SUMMARY_FILE:-}" ]; then
    echo "$passed $failed" >> "$LC_SUMMARY_FILE"
fi
if grep -q '^ERROR: ' "$log" && [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
    echo "FAIL bazel (no test ran: see the errors above)"
    failed=1
    [ -n "${LC_SUMMARY_FILE:-}" ] && echo "0 1" >> "$LC_SUMMARY_FILE"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
