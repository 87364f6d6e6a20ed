"""README's commands typed in the clone's root: the source tree's cpfast/ leads sys.path there and
must still find the installed compiled modules (cpfast/_native.py)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

from cpfast import _native

ROOT = Path(__file__).resolve().parent.parent


def run_in_root(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_import_from_the_clone_root_uses_the_tree_and_finds_the_compiled_modules():
    result = run_in_root("-c", "import cpfast, cpfast._native as n; print(cpfast.__file__); print(cpfast._envs.__file__)")
    assert result.returncode == 0, result.stderr
    package_file, envs_file = result.stdout.split()
    assert Path(package_file) == ROOT / "cpfast" / "__init__.py"
    assert Path(envs_file).parent == _native.NATIVE_DIR
    assert "RuntimeWarning" not in result.stderr  # the installed modules were built from this tree


def test_readme_main_job_runs_from_the_clone_root(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0 && pip install . && python -m cpfast.train" in readme
    run_dir = tmp_path / "run"
    result = run_in_root("-m", "cpfast.train", "--preset", "quick", "--steps", "2000", "--eval-episodes", "3",
                         "--threads", "1", "--no-progress", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] > 0 and "return" in summary["evaluation"]


def test_without_any_compiled_modules_the_error_says_what_to_do():
    # -S hides site-packages, so neither the tree nor an installed cpfast has the modules.
    result = run_in_root("-S", "-c", "import cpfast")
    assert result.returncode != 0
    assert "NativeModulesMissing" in result.stderr and "pip install ." in result.stderr
    assert "circular import" not in result.stderr


def test_stale_install_is_reported(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    for sub in _native.SOURCE_DIRS:
        (tree / sub).mkdir(parents=True)
    (tree / "csrc" / "a.cpp").write_text("int a;\n")
    install = tmp_path / "install"
    install.mkdir()
    (install / _native.BUILD_INFO).write_text(json.dumps({"source_sha256": _native.source_hash(tree)}))
    monkeypatch.setattr(_native, "PACKAGE_DIR", tree / "cpfast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _native._warn_if_stale(install)  # same sources: silent
    (tree / "csrc" / "a.cpp").write_text("int b;\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _native._warn_if_stale(install)
    assert any("pip install ." in str(w.message) for w in caught)
