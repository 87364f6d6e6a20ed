#!/usr/bin/env bash
# The sanitizer job of .ci/run: both compiled modules built with AddressSanitizer and
# UndefinedBehaviorSanitizer, then the environment and kernel tests (with their hypothesis fuzz
# of valid states and bad inputs) run against that build. Any report fails the job.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
python -m pip wheel "$root" --no-deps --wheel-dir "$work/wheel" \
  -C build-dir="$root/build/sanitize" -C cmake.build-type=RelWithDebInfo -C cmake.define.CPFAST_CUDA=OFF \
  -C cmake.define.CMAKE_CXX_FLAGS="$flags" -C cmake.define.CMAKE_MODULE_LINKER_FLAGS="$flags"
python -m zipfile -e "$work"/wheel/cpfast-*.whl "$work/site"
# Python loads the sanitizer runtimes first (the interpreter itself is not instrumented); ASan
# needs libstdc++ preloaded with it so that its C++ interceptors resolve. Leak checking is off:
# the interpreter never frees everything at exit.
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so):$(g++ -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# Run outside the clone so that `import cpfast` finds the sanitized build, not the source tree.
cd "$work/site"
python - <<'PY'
import os, subprocess
import cpfast._envs, cpfast._kernels
for module in (cpfast._envs, cpfast._kernels):  # the instrumented build, nothing else
    assert module.__file__.startswith(os.getcwd()), module.__file__
    assert "__asan_init" in subprocess.run(["nm", "-D", module.__file__], capture_output=True, text=True).stdout
print("sanitizer job: testing", os.path.dirname(cpfast._envs.__file__))
PY
python -m pytest -q -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" \
  "$root/tests/test_env_contract.py" "$root/tests/test_env_bad_input.py" "$root/tests/test_env_faults.py" \
  "$root/tests/test_rc_conformance.py" "$root/tests/test_rc_rules.py" "$root/tests/test_rescue_rules.py" \
  "$root/tests/test_sc2_rules.py" "$root/tests/test_sc2_backend.py" "$root/tests/test_kernels.py" \
  -k "not worker_thread_cannot_start" "$@"
