#!/usr/bin/env bash
# The project's test command, as README.md shows it; .ci/run calls exactly this script.
# Installs the package with its test extras, then runs the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install ".[test]"
status=0
python -m pytest "$@" || status=$?
case "$status" in
  0) ;;
  5) echo "run_tests.sh: pytest collected no tests" >&2; exit 1 ;;
  *) echo "run_tests.sh: pytest exited with status $status" >&2; exit "$status" ;;
esac
