#!/usr/bin/env bash
# Every public header compiles on its own (its own first include), as C99, C11 and C++ (11 and
# 17, through extern "C"), with -Wall -Wextra -Wpedantic -Werror. Args: the headers.
set -uo pipefail
. "$(dirname "$0")/cases.sh"
inc=""
for h in "$@"; do
    case $h in include/loopcore.h | */include/loopcore.h) inc=$(cd "$(dirname "$h")" && pwd) ;; esac
done
[ -n "$inc" ] || { echo "include/loopcore.h not among the arguments" >&2; exit 1; }
one() { # one LANG STD HEADER
    local rel=${3##*include/} tu
    tu="#include \"$rel\"
int lc_header_test_unit;"
    if [ "$1" = c ]; then
        gcc -std="$2" -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" -x c - <<< "$tu"
    else
        g++ -std="$2" -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" -x c++ - <<< "$tu"
    fi
}
for h in "$@"; do
    rel=${h##*include/}
    for std in c99 c11; do case_run "$rel/$std" one c "$std" "$h"; done
    for std in c++11 c++17; do case_run "$rel/$std" one c++ "$std" "$h"; done
done
case_exit
