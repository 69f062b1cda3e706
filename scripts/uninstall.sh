#!/usr/bin/env bash
# scripts/uninstall.sh [PREFIX]
#
# Removes exactly what scripts/install.sh PREFIX installed (default /usr/local; $DESTDIR as at
# install): every path listed in share/loopcore/install_manifest.txt, then the folders of loopcore's
# own (include/loopcore, share/loopcore) once empty. Other files are never touched.
set -euo pipefail
prefix=${1:-/usr/local}
prefix=${prefix%/}
dest=${DESTDIR:-}${prefix}
manifest=$dest/share/loopcore/install_manifest.txt
if [ ! -f "$manifest" ]; then
    echo "uninstall.sh: no loopcore installed under $dest ($manifest is missing)" >&2
    exit 1
fi
n=0
dirs=()
while IFS= read -r path; do
    case $path in "dir "*)
        dirs+=("${path#dir }")
        continue
        ;;
    esac
    case $path in "$prefix"/*) ;; *)
        echo "uninstall.sh: $manifest lists $path, outside $prefix: stopping" >&2
        exit 1
        ;;
    esac
    if [ -e "${DESTDIR:-}$path" ] || [ -L "${DESTDIR:-}$path" ]; then
        rm -f "${DESTDIR:-}$path"
        n=$((n + 1))
    fi
done < "$manifest"
for d in "${dirs[@]}"; do
    case $d in "$prefix"/*) rmdir "${DESTDIR:-}$d" 2> /dev/null || true ;; esac
done
echo "removed $n files of loopcore from $dest"
