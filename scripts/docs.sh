#!/usr/bin/env bash
# Builds the API reference: Doxygen (Doxyfile at the repository root) on the public headers,
# include/loopcore.h and include/loopcore/*.h, with docs/asyncio-mapping.md as the front page,
# into build/docs/html (open build/docs/html/index.html). Warnings are errors: every public
# function, type, struct field, enum value and macro must carry a doc comment (/** ... */ before
# it, or /**< ... */ after a field), and each header must open with its @file / @defgroup comment
# (a header without one is not checked by doxygen at all, so this script checks it).
#
# On failure it lists each problem, one per line ("include/loopcore/x.h:LINE: undocumented
# function lc_x(...)"), then prints "FAIL docs: ..."; on success "PASS docs (N warnings)". When
# LC_SUMMARY_FILE is set, appends "1 0" or "0 1" to it (as scripts/summarize.sh does). Exit status
# 1 on failure. The full doxygen log is build/docs/doxygen.log, its warnings build/docs/warnings.log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
out=build/docs

finish() { # finish PASS|FAIL text
    if [ "$1" = PASS ]; then
        echo "PASS docs ($2)"
        [ -n "${LC_SUMMARY_FILE:-}" ] && echo "1 0" >> "$LC_SUMMARY_FILE"
        exit 0
    fi
    echo "FAIL docs: $2"
    [ -n "${LC_SUMMARY_FILE:-}" ] && echo "0 1" >> "$LC_SUMMARY_FILE"
    exit 1
}

command -v doxygen > /dev/null || finish FAIL "doxygen not found (scripts/setup.sh installs it)"

# Headers doxygen would skip silently: without a documented file or group, it reports none of
# their undocumented declarations. Each header names its group (loopcore.h: the umbrella, @file).
problems=()
for h in include/loopcore.h include/loopcore/*.h; do
    case $h in
    include/loopcore.h) grep -q '@file' "$h" && continue ;;
    *) grep -q '@file' "$h" && grep -q '@defgroup' "$h" && grep -q '@{' "$h" && continue ;;
    esac
    problems+=("$h:1: no top comment '/** @file / @ingroup NAME / @defgroup NAME Title ... @{ */' (and '/** @} */' before the last #endif) as the other headers have: doxygen checks nothing in this header")
done

rm -rf "$out"
mkdir -p "$out"
doxygen Doxyfile > "$out/doxygen.log" 2>&1
rc=$?
[ -f "$out/warnings.log" ] || : > "$out/warnings.log"

# Doxygen's warnings, de-duplicated (a member of a file and of its group is reported twice),
# paths relative to the repository, undocumented symbols spelt out.
mapfile -t warnings < <(sed "s|$root/||" "$out/warnings.log" | sed -E \
    -e 's/^(.*): (error|warning): Member (.*) \(variable\) of (struct|union) ([^ ]+) is not documented\.$/\1: undocumented field \3 (in \4 \5)/' \
    -e 's/^(.*): (error|warning): Member (.*) \(macro definition\) of (group|file) ([^ ]+) is not documented\.$/\1: undocumented macro \3 (in \4 \5)/' \
    -e 's/^(.*): (error|warning): Member (.*) \(([a-z ]+)\) of (group|struct|union|file) ([^ ]+) is not documented\.$/\1: undocumented \4 \3 (in \5 \6)/' \
    -e 's/^(.*): (error|warning): Compound (.*) is not documented\.$/\1: undocumented struct or union \3/' \
    -e 's/^(.*): (error|warning): /\1: /' | awk 'NF && !seen[$0]++' | sort -t: -k1,1 -k2,2n -s)
# Doxygen does not warn about an undocumented value of a documented enum: read them from its XML.
mapfile -t -O "${#warnings[@]}" warnings < <(python3 - "$out/xml" "$root" <<'PY'
import glob, os, sys
import xml.etree.ElementTree as ET
seen = set()
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.xml"))):
    try:
        tree = ET.parse(path)
    except ET.ParseError:
        continue
    for enum in tree.iter("memberdef"):
        if enum.get("kind") != "enum":
            continue
        loc = enum.find("location")
        where = "%s:%s" % (os.path.relpath(loc.get("file"), sys.argv[2]), loc.get("line")) if loc is not None else "?"
        for value in enum.findall("enumvalue"):
            text = "".join(value.find("briefdescription").itertext()) + \
                "".join(value.find("detaileddescription").itertext())
            name = value.findtext("name")
            if not text.strip() and name not in seen:
                seen.add(name)
                print("%s: undocumented enum value %s (in enum %s)" % (where, name, enum.findtext("name")))
PY
)
n=${#warnings[@]}

for p in "${problems[@]}"; do echo "$p"; done
for w in "${warnings[@]}"; do echo "$w"; done

if [ "${#problems[@]}" -gt 0 ] || [ "$n" -gt 0 ] || [ "$rc" -ne 0 ]; then
    undocumented=$(printf '%s\n' "${warnings[@]}" | grep -c ': undocumented ')
    if [ "$n" -eq 0 ] && [ "${#problems[@]}" -eq 0 ]; then
        tail -20 "$out/doxygen.log"
        finish FAIL "doxygen exited with status $rc (log: $out/doxygen.log)"
    fi
    finish FAIL "$n warnings ($undocumented undocumented symbols), ${#problems[@]} headers without their doc comment; listed above (full log: $out/warnings.log)"
fi
[ -f "$out/html/index.html" ] || finish FAIL "no $out/html/index.html (log: $out/doxygen.log)"
finish PASS "$n warnings"
