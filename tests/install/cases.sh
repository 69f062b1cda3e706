# Sourced by the tests in this folder: CMocka-style result lines, so that scripts/summarize.sh
# counts each case ("[ RUN      ] name", then "[       OK ] name" or "[  FAILED  ] name").
failures=0
case_run() { # case_run NAME COMMAND...: runs the command, its output indented
    local name=$1
    shift
    echo "[ RUN      ] $name"
    if "$@" 2>&1 | sed 's/^/    /'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
        echo "[       OK ] $name"
    else
        echo "[  FAILED  ] $name"
        failures=$((failures + 1))
    fi
}
case_exit() { [ "$failures" -eq 0 ]; }
