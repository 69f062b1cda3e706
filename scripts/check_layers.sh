#!/usr/bin/env bash
# check_layers.sh: shows that the build enforces the layers (DESIGN.md's table; bazel/layers.bzl).
# In a scratch copy of the working tree (tracked and untracked files, not the ignored ones), with
# a Bazel server of its own (output base inside the copy; the disk cache of ~/.bazelrc still
# serves it), it first builds //... unchanged, which must pass, then tries one forbidden thing at
# a time and expects `bazel build //...` to fail for that reason:
#   include  FILE HEADER TARGET   #include "HEADER" as FILE's first line: "undeclared inclusion(s)
#                                 in rule 'TARGET'" naming HEADER
#   dep      BUILD TARGET DEP     DEP added to TARGET's deps: "target 'DEP' is not visible"
# The whole tree is built each time, so every package is linked into the execroot and a header
# is always found by its path: what fails is Bazel's check of each compile's .d file against the
# headers its target's declared dependencies offer, which the local spawn strategy runs too.
# Prints "PASS layers <probe>" or "FAIL layers <probe>: <why>" per probe, then "N passed, N
# failed". When LC_SUMMARY_FILE is set, appends the counts. Exit status: non-zero on any FAIL.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# Forbidden includes: each layer reaching below its public face.
INCLUDES=(
    # the MPSC queue depends on nothing
    "threadsafe/mpsc.c include/loopcore/loop.h //threadsafe:mpsc"
    # the engine does not see the layers above it
    "engine/loop.c executor/pool.h //engine:internal"
    # the group: the engine's public API and engine/group_hooks.h only
    "threadsafe/group.c engine/loop_internal.h //threadsafe:group_internal"
    "threadsafe/group_server.c engine/stream_internal.h //threadsafe:group_internal"
    "threadsafe/group.c engine/executor_hooks.h //threadsafe:group_internal"
    # the executor: the public API and engine/executor_hooks.h only (and the MPSC queue)
    "executor/pool.c engine/loop_internal.h //executor:internal"
    "executor/default.c engine/inbound.h //executor:internal"
    "executor/queue_work.c engine/group_hooks.h //executor:internal"
    # bench/ and examples/: the public headers only
    "bench/http_server.c engine/loop_internal.h //bench:http_server"
    "bench/http_server.c engine/executor_hooks.h //bench:http_server"
    "bench/http_server.c engine/group_hooks.h //bench:http_server"
    "bench/http_server.c executor/pool.h //bench:http_server"
    "bench/http_server.c threadsafe/mpsc.h //bench:http_server"
    "examples/hello_world.c engine/future_internal.h //examples:hello_world"
    # tests: the public API, unless a test's BUILD rule asks for //engine:internal
    "tests/executor/test_executor.c engine/loop_internal.h //tests/executor:executor_test"
)

# Forbidden dependencies: private targets named from outside their visibility.
DEPS=(
    "bench/BUILD //bench:http_server //engine:internal"
    "bench/BUILD //bench:http_server //threadsafe:mpsc"
    "bench/BUILD //bench:echo_server //engine:executor_hooks"
    "executor/BUILD //executor:internal //engine:group_hooks"
    "executor/BUILD //executor:internal //engine:internal"
    "threadsafe/BUILD //threadsafe:group_internal //engine:internal"
)

passed=0
failed=0
pass() {
    echo "PASS layers $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL layers $1"
    failed=$((failed + 1))
}

scratch=$(mktemp -d /tmp/lc-layers.XXXXXX)
bz() { bazel --output_base="$scratch/.output_base" "$@"; }
cleanup() {
    (cd "$scratch/tree" 2>/dev/null && bz shutdown >/dev/null 2>&1)
    rm -rf "$scratch"
}
trap cleanup EXIT

mkdir -p "$scratch/tree"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
        [ -e "$f" ] && printf '%s\0' "$f"
    done | xargs -0 cp --parents -t "$scratch/tree" || {
    echo "FAIL layers: could not copy the tree"
    exit 1
}
cd "$scratch/tree" || exit 1
log="$scratch/build.log"

build() { bz build --keep_going //... >"$log" 2>&1; }

if build; then
    pass "baseline: the unchanged tree builds"
else
    tail -30 "$log"
    fail "baseline: the unchanged tree does not build; the probes would prove nothing"
    echo "$passed passed, $failed failed"
    [ -n "${LC_SUMMARY_FILE:-}" ] && echo "$passed $failed" >>"$LC_SUMMARY_FILE"
    exit 1
fi

for probe in "${INCLUDES[@]}"; do
    read -r file header target <<<"$probe"
    what="$target: $file includes $header"
    cp "$file" "$scratch/saved"
    { echo "#include \"$header\""; cat "$scratch/saved"; } >"$file"
    if build; then
        fail "$what: the build passed"
    elif grep -q "undeclared inclusion(s) in rule '$target'" "$log" &&
        grep -q "^  '$header'$" "$log"; then
        pass "$what: $(grep -m1 -o "undeclared inclusion(s) in rule '$target'" "$log")"
    else
        grep -m3 -E 'ERROR|error' "$log"
        fail "$what: the build failed, but not for an undeclared inclusion of $header"
    fi
    cp "$scratch/saved" "$file"
done

for probe in "${DEPS[@]}"; do
    read -r buildfile target dep <<<"$probe"
    name=${target##*:}
    what="$target: depends on $dep"
    cp "$buildfile" "$scratch/saved"
    # Adds dep as the first entry of the rule's deps list ("deps = [" or "deps = ["x"]").
    awk -v name="$name" -v dep="$dep" '
        $0 ~ "name = \"" name "\"," { inrule = 1 }
        inrule && /^ *deps = \[/ {
            sub(/deps = \[/, "deps = [\"" dep "\", ")
            inrule = 0
        }
        inrule && /^\)/ { printf "    deps = [\"%s\"],\n", dep; inrule = 0 }
        { print }' "$scratch/saved" >"$buildfile"
    if ! grep -q "\"$dep\"" "$buildfile"; then
        fail "$what: could not add the dependency to $buildfile"
    elif build; then
        fail "$what: the build passed"
    elif grep -q "target '$dep' is not visible from target '$target'" "$log"; then
        pass "$what: target '$dep' is not visible"
    else
        grep -m3 -E 'ERROR|error' "$log"
        fail "$what: the build failed, but not for the visibility of $dep"
    fi
    cp "$scratch/saved" "$buildfile"
done

echo "$passed passed, $failed failed"
[ -n "${LC_SUMMARY_FILE:-}" ] && echo "$passed $failed" >>"$LC_SUMMARY_FILE"
[ "$failed" -eq 0 ]
