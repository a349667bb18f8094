"""A disk cache for models the chapters train, never stale: keyed by code and settings.

Several chapters train the same small model with the same settings (chapters
5 to 8 all call ``train_grammar(seed=0)``, chapter 12 and the playground
``train_induction(seed=0)``), and a chapter that executes again after an edit
would train its models again. When the environment variable
``ATTENTION_MODEL_CACHE`` names a folder (``conf.py`` sets it for the book's
build), :func:`cached` stores what a training returns there, and a later call
with the same arguments loads it instead of training again. Without the
variable nothing is cached: the tests and the readers' own sessions always
train.

An entry is used only if nothing that could change its result changed:

- the arguments (their ``repr``, so every field of a config counts);
- the source of the training function's module and of every ``attention``
  module it imports, directly or through another (found by reading the
  files' import statements, so an edit to a module the training does not
  import invalidates nothing);
- the versions of torch and numpy, and the settings that choose another
  floating-point code path (``MKL_CBWR``, ``MKL_ENABLE_INSTRUCTIONS``,
  ``ATEN_CPU_CAPABILITY``).

All of these go into the entry's file name, so a changed input finds no entry
and trains afresh; a training is never mixed with another's. Loading gives
the same tensors bit for bit as the training that wrote them.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

try:
    import fcntl
except ImportError:  # not on Windows: kernels that need one model at once both train it
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

ENVIRONMENT_VARIABLE = "ATTENTION_MODEL_CACHE"
_PACKAGE = "attention"
_FLOATING_POINT_SETTINGS = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def package_imports(module: str, root: Path) -> dict[str, Path]:
    """The files of ``module`` and of every package module it imports, transitively.

    Args:
        module: A dotted name inside the package, such as ``"attention.grammar"``.
        root: The folder that holds the package folder (``src``).

    Returns:
        Dotted name -> file, for ``module`` and each package module reached
        from it through ``import`` and ``from ... import`` statements
        (including the packages ``__init__`` files on the way).
    """
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _module_file(name, root)
        if path is None:
            continue
        found[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] == _PACKAGE)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, parts if is_package else parts[:-1])
                if base.split(".")[0] == _PACKAGE:
                    todo.append(base)
                    todo.extend(f"{base}.{a.name}" for a in node.names)  # may be modules
    return found


def _absolute(node: ast.ImportFrom, package: list[str]) -> str:
    """The absolute module name of a ``from ... import`` statement."""
    if node.level == 0:
        return node.module or ""
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of a dotted module name under ``root``, or None if it is not one."""
    folder = root.joinpath(*name.split("."))
    for path in (folder / "__init__.py", folder.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def key(function: Callable[..., object], arguments: object, root: Path) -> str:
    """The hex digest naming an entry: code, arguments, library versions, FP settings."""
    digest = hashlib.sha256()
    digest.update(f"{function.__module__}.{function.__qualname__}\n{arguments!r}\n".encode())
    for name, path in sorted(package_imports(function.__module__, root).items()):
        digest.update(f"{name} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    for dist in ("torch", "numpy"):
        try:
            digest.update(f"{dist}=={importlib.metadata.version(dist)}\n".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dist} missing\n".encode())
    for var in _FLOATING_POINT_SETTINGS:
        digest.update(f"{var}={os.environ.get(var, '')}\n".encode())
    return digest.hexdigest()


def cached(function: Callable[..., T], arguments: tuple[object, ...], train: Callable[[], T]) -> T:
    """``train()``, or its stored result when the cache holds one for the same inputs.

    Args:
        function: The public training function (names the entry and the code).
        arguments: Everything the result depends on besides the code, with a
            ``repr`` that shows every value.
        train: Computes the result (called when there is no entry, or no cache).

    Returns:
        What ``train()`` returns, or an identical object loaded from disk.
    """
    folder = os.environ.get(ENVIRONMENT_VARIABLE)
    if not folder:
        return train()
    root = Path(sys.modules[function.__module__].__file__ or "").resolve().parents[1]
    path = Path(folder) / f"{function.__name__}-{key(function, arguments, root)[:32]}.pt"
    if path.is_file():
        result: T = torch.load(path, weights_only=False)  # written by this function only
        return result
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two kernels of a parallel build that need the same model: the second
    # waits for the first's training and loads it instead of training again.
    with path.with_suffix(".lock").open("a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.is_file():
            result = torch.load(path, weights_only=False)
            return result
        result = train()
        partial = path.with_suffix(f".{os.getpid()}.partial")
        torch.save(result, partial)
        partial.replace(path)  # atomic: a reader without the lock never sees half a file
    return result
