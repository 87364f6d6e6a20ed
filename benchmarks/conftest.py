"""Shared reporting for the benchmark suites: each benchmark stores a throughput under a
row/column key and the terminal summary prints the table and the ratios of one run."""

import sys
from collections import defaultdict
from pathlib import Path

import pytest

# The benchmarks build their inputs with the tests' helpers (tests/helpers.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

_THROUGHPUT: dict[str, dict[tuple, float]] = defaultdict(dict)


@pytest.fixture
def record_throughput():
    def record(table: str, key: tuple, value: float) -> None:
        _THROUGHPUT[table][key] = value

    return record


def pytest_terminal_summary(terminalreporter):
    from bench_envs import summarize_env_throughput, summarize_sc2_throughput  # suites own their tables
    from bench_kernels import summarize_kernels
    from bench_train import summarize_training

    for line in (summarize_env_throughput(_THROUGHPUT.get("env_steps", {}))
                 + summarize_sc2_throughput(_THROUGHPUT.get("sc2_env_steps", {})) + summarize_training(_THROUGHPUT)
                 + summarize_kernels(_THROUGHPUT.get("kernels", {}))):
        terminalreporter.write_line(line)
