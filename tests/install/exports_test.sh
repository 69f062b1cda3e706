#!/usr/bin/env bash
# libloopcore.so exports exactly the functions the public headers declare: every lc_* function
# declared in include/ is a defined dynamic symbol, and nothing else is (no lc__ internals, no
# llhttp or helper symbols, no data). Args: LIBSO HEADERS...
set -uo pipefail
. "$(dirname "$0")/cases.sh"
so=$1
shift
umbrella=""
for h in "$@"; do case $h in include/loopcore.h | */include/loopcore.h) umbrella=$h ;; esac; done
work=${TEST_TMPDIR:-$(mktemp -d)}
# Declared: the names followed by "(" in the preprocessed umbrella header. Function-pointer
# typedefs read "(*lc_x_fn)(", so their names are followed by ")" and do not match.
gcc -E -P -std=gnu11 -I"$(dirname "$umbrella")" "$umbrella" | tr '\n' ' ' |
    grep -oE '\blc_[A-Za-z0-9_]*[[:space:]]*\(' | sed -E 's/[[:space:]]*\($//' | sort -u \
    > "$work/declared"
nm -D --defined-only "$so" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 " " $2 }' | sort > "$work/exported_typed"
awk '{ print $1 }' "$work/exported_typed" | sort -u > "$work/exported"
declared_present() { [ "$(wc -l < "$work/declared")" -gt 100 ]; }
every_declared_is_exported() {
    comm -23 "$work/declared" "$work/exported" | sed 's/^/declared, not exported: /' |
        grep . && return 1
    return 0
}
nothing_else_is_exported() {
    comm -13 "$work/declared" "$work/exported" | sed 's/^/exported, not declared: /' |
        grep . && return 1
    return 0
}
exports_are_functions() {
    awk '$2 != "T" { print "not a function: " $0; bad = 1 } END { exit bad }' \
        "$work/exported_typed"
}
soname_carries_major() {
    local major
    major=$(sed -n 's/^#define LC_VERSION_MAJOR \([0-9]*\)$/\1/p' "$(dirname "$umbrella")/loopcore/version.h")
    grep -q "SONAME.*\[libloopcore.so.$major\]" <<< "$(readelf -d "$so")"
}
case_run declared_functions_found declared_present
case_run every_declared_function_is_exported every_declared_is_exported
case_run nothing_else_is_exported nothing_else_is_exported
case_run exports_are_functions exports_are_functions
case_run soname_carries_major soname_carries_major
echo "$(wc -l < "$work/exported") functions exported"
case_exit
