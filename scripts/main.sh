#!/usr/bin/env bash
# The main job: set-up, build, then run the ported spec examples (the demo with the load
# generator replaces this once it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bazel build -c opt //examples:all
echo "== examples/hello_world (call_soon)"
bazel-bin/examples/hello_world
echo "== examples/display_date (call_later, 5 s)"
bazel-bin/examples/display_date 5
