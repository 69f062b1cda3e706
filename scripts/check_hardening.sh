#!/usr/bin/env bash
# check_hardening.sh [BAZEL_OPTIONS...]   (default: -c opt)
# Reads every shipped binary (the cc_binary targets under //bench and //examples) of a build that
# is already done (bazel build -c opt //...) and checks the hardening of issue 11:
#   pie       ELF type DYN (position-independent executable)
#   relro     a GNU_RELRO segment and BIND_NOW (FLAGS BIND_NOW or FLAGS_1 NOW): full RELRO
#   ssp       __stack_chk_fail imported (stack protector; every binary of ours has arrays on stack)
#   fortify   at least one __*_chk function imported (_FORTIFY_SOURCE took effect)
#   cet       the IBT marker in .note.gnu.property (readelf -n), where this platform's start
#             files carry it; see "CET" below
#   nx-stack  a GNU_STACK segment without E
# Prints "PASS hardening <binary>", or one "FAIL hardening <binary>: <what>" line per missing
# property. When LC_SUMMARY_FILE is set, appends "1 0" (passed) or "0 1" (failed) per binary.
# Exit status: non-zero if any binary failed or none was found.
#
# CET. The linker ANDs the IBT/SHSTK markers of every object it links, the C runtime's start
# files (Scrt1.o, crti.o, crtn.o) included. Debian 12's glibc is built without CET: its start files
# carry no marker and crti.o's _init, which ld.so calls indirectly, has no endbr64. So no binary
# linked here can carry the marker, with any linker, and forcing it (-Wl,-z,ibt) would be a false
# claim. (Bazel's toolchain links with gold, which drops the note in any case.) Where the start
# files lack the marker, the check is that our code was built with -fcf-protection instead: every
# global function of the binary must begin with endbr64. SHSTK is not required: the fibers of
# engine/fiber.h switch stacks without switching shadow stacks, so fiber_switch.S marks its
# object IBT only, which clears SHSTK from every binary with tasks (see that file).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

[ $# -gt 0 ] || set -- -c opt

summary() {
    [ -n "${LC_SUMMARY_FILE:-}" ] && echo "$1" >> "$LC_SUMMARY_FILE"
    return 0
}

bin_dir=$(bazel info "$@" bazel-bin 2>/dev/null) || {
    echo "FAIL hardening: bazel info $* bazel-bin failed"
    summary "0 1"
    exit 1
}
targets=$(bazel query 'kind("cc_binary rule", //bench/... + //examples/... + //:libloopcore.so)' 2>/dev/null) || {
    echo "FAIL hardening: bazel query failed"
    summary "0 1"
    exit 1
}

# Whether this platform's start files carry the IBT marker (then binaries must carry it too), and
# the functions they define (_start, _init, _fini), which the endbr64 check leaves out.
start_files_ibt=1
start_funcs=""
for f in Scrt1.o crti.o crtn.o; do
    path=$(gcc -print-file-name="$f")
    if ! readelf -nW "$path" 2>/dev/null | grep -q 'x86 feature:.*IBT'; then
        start_files_ibt=0
    fi
    start_funcs+=" $(nm --defined-only "$path" 2>/dev/null | awk '$2 == "T" {printf "%s ", $3}')"
done

# Global functions (nm type T) defined in $1, other than the start files', that do not begin with
# endbr64: "count first-name".
missing_endbr() {
    local bin=$1
    awk -v skip="$start_funcs" '
         BEGIN { n = split(skip, s, " "); for (i = 1; i <= n; i++) skipped[s[i]] = 1; n = 0 }
         NR == FNR { if ($2 == "T" && !($3 in skipped)) want[$3] = 1; next }
         /^[0-9a-f]+ <[^>]+>:$/ { name = substr($2, 2, length($2) - 3); first = 1; next }
         first && /^ *[0-9a-f]+:\t/ {
             first = 0
             if ((name in want) && $0 !~ /endbr64/) { n++; if (bad == "") bad = name }
         }
         END { print n + 0, bad }' <(nm "$bin") <(objdump -d --no-show-raw-insn "$bin")
}

total=0
failed=0
for label in $targets; do
    pkg=${label#//}
    pkg=${pkg%%:*}
    name=${label##*:}
    rel="${pkg:+$pkg/}$name"
    bin="$bin_dir/$rel"
    total=$((total + 1))
    if [ ! -f "$bin" ]; then
        echo "FAIL hardening $rel: not built ($bin missing; run bazel build $* //... first)"
        failed=$((failed + 1))
        summary "0 1"
        continue
    fi
    header=$(readelf -hW "$bin")
    segments=$(readelf -lW "$bin")
    dynamic=$(readelf -dW "$bin")
    notes=$(readelf -nW "$bin")
    imports=$(nm -D --undefined-only "$bin" | awk '{print $2}' | sed 's/@.*//')
    problems=()

    grep -qE '^ *Type: +DYN' <<<"$header" ||
        problems+=("not PIE (ELF type $(awk '/Type:/ {print $2}' <<<"$header"), want DYN)")
    if ! grep -qE '^ *GNU_RELRO ' <<<"$segments"; then
        problems+=("no RELRO (no GNU_RELRO segment)")
    elif ! grep -qE '\(FLAGS\) .*BIND_NOW|\(FLAGS_1\) .*\bNOW\b' <<<"$dynamic"; then
        problems+=("partial RELRO only (no BIND_NOW / FLAGS_1 NOW: link with -Wl,-z,now)")
    fi
    grep -qx '__stack_chk_fail' <<<"$imports" ||
        problems+=("no stack protector (__stack_chk_fail not imported)")
    grep -vx '__stack_chk_fail' <<<"$imports" | grep -qE '^__.+_chk$' ||
        problems+=("no FORTIFY (no __*_chk function imported)")
    if [ "$(uname -m)" != x86_64 ]; then
        : # IBT is x86-64's; aarch64's BTI marker is not checked here
    elif [ "$start_files_ibt" = 1 ]; then
        grep -qE 'x86 feature:.*IBT' <<<"$notes" ||
            problems+=("no CET IBT marker in .note.gnu.property (an object lacks -fcf-protection)")
    else
        read -r nbad firstbad < <(missing_endbr "$bin")
        [ "$nbad" -eq 0 ] ||
            problems+=("no cf-protection: $nbad global functions lack endbr64 (first: $firstbad)")
    fi
    stack=$(grep -E '^ *GNU_STACK ' <<<"$segments")
    if [ -z "$stack" ]; then
        problems+=("no GNU_STACK segment (stack executable by default)")
    elif [[ $(awk '{f = ""; for (i = 7; i < NF; i++) f = f $i; print f}' <<<"$stack") == *E* ]]; then
        problems+=("executable stack (GNU_STACK has E: an object lacks .note.GNU-stack)")
    fi

    if [ ${#problems[@]} -eq 0 ]; then
        echo "PASS hardening $rel"
        summary "1 0"
    else
        for p in "${problems[@]}"; do
            echo "FAIL hardening $rel: $p"
        done
        failed=$((failed + 1))
        summary "0 1"
    fi
done

if [ "$total" -eq 0 ]; then
    echo "FAIL hardening: no cc_binary found under //bench and //examples"
    summary "0 1"
    exit 1
fi
[ "$failed" -eq 0 ]
