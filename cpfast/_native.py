"""Finds cpfast's compiled modules, ``cpfast._envs`` and ``cpfast._kernels``.

``pip install .`` builds them into the installed package. Python started in a clone's root puts
the current directory first on ``sys.path``, so ``import cpfast`` there imports the source tree's
``cpfast/``, which has no compiled modules. They are then loaded from the installed copy, so every
command works the same from the clone's root as from anywhere else. Because the Python code then
comes from the tree and the compiled code from the install, a tree whose C++ sources differ from
those the install was built from gets a warning to run ``pip install .`` again.

Imported first by ``cpfast/__init__.py``; it imports nothing of cpfast itself.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import sys
import warnings
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MODULES = ("_envs", "_kernels")
BUILD_INFO = "_build_info.json"  # written by CMakeLists.txt beside the compiled modules
SOURCE_DIRS = ("envs_cpp", "csrc")  # what the build-info hash covers (keep in step with CMakeLists.txt)
SOURCE_SUFFIXES = (".h", ".cpp", ".cu")
INSTALL_HINT = "run `pip install .` in the cpfast clone's root (it builds the C++ modules), then try again"


class NativeModulesMissing(ImportError):
    """cpfast's compiled modules are neither in this package nor in an installed cpfast."""


def _extension_path(directory: Path, name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / (name + suffix)
        if path.is_file():
            return path
    return None


def installed_package_dir() -> Path | None:
    """The ``cpfast/`` folder of the installed distribution, or None when none is installed."""
    try:
        dist = importlib.metadata.distribution("cpfast")
    except importlib.metadata.PackageNotFoundError:
        return None
    directory = Path(dist.locate_file("cpfast"))
    return directory.resolve() if directory.is_dir() else None


def source_hash(root: Path) -> str:
    """SHA-256 over the C++ sources under ``root``, computed the way CMakeLists.txt does."""
    sources = sorted(path.relative_to(root).as_posix() for sub in SOURCE_DIRS for path in (root / sub).rglob("*")
                     if path.suffix in SOURCE_SUFFIXES and path.is_file())
    lines = [f"{source}:{hashlib.sha256((root / source).read_bytes()).hexdigest()}\n" for source in sources]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _warn_if_stale(install_dir: Path) -> None:
    tree = PACKAGE_DIR.parent
    info_path = install_dir / BUILD_INFO
    if not all((tree / sub).is_dir() for sub in SOURCE_DIRS) or not info_path.is_file():
        return
    built_from = json.loads(info_path.read_text()).get("source_sha256")
    if built_from != source_hash(tree):
        warnings.warn(f"cpfast: the compiled modules in {install_dir} were built from other C++ sources than "
                      f"{tree}'s {' and '.join(d + '/' for d in SOURCE_DIRS)}; {INSTALL_HINT}", RuntimeWarning, stacklevel=3)


def _load(name: str, path: Path) -> None:
    full_name = f"{__package__}.{name}"
    spec = importlib.util.spec_from_file_location(full_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = module
    spec.loader.exec_module(module)
    setattr(sys.modules[__package__], name, module)


def locate() -> Path:
    """Makes ``cpfast._envs`` and ``cpfast._kernels`` importable and returns the folder they come from."""
    if _extension_path(PACKAGE_DIR, "_envs") is not None:
        return PACKAGE_DIR  # an installed package (or an in-place build): the usual import finds them
    install_dir = installed_package_dir()
    if install_dir is None or install_dir == PACKAGE_DIR or _extension_path(install_dir, "_envs") is None:
        raise NativeModulesMissing(
            f"cpfast's compiled modules (_envs, _kernels) were not found: {PACKAGE_DIR} is a source tree without "
            f"them and no installed cpfast has them; {INSTALL_HINT}")
    _warn_if_stale(install_dir)
    for name in MODULES:
        path = _extension_path(install_dir, name)
        if path is not None:  # a missing _kernels is reported by cpfast.ops, which falls back to torch
            _load(name, path)
    return install_dir


NATIVE_DIR = locate()
