"""Module paths of version 0.1 that moved: ``import mgrit_gru.train`` and friends keep working.

A meta-path finder answers an old name with the module at its new place (the same module
object, not a copy), so a user's script that imports ``mgrit_gru.diagnostics`` or
``from mgrit_gru.data import moving_objects`` runs unchanged, and nothing is imported before
it is asked for.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "mgrit_gru.train": "mgrit_gru.training",
    "mgrit_gru.model": "mgrit_gru.training.model",
    "mgrit_gru.optim": "mgrit_gru.training.optim",
    "mgrit_gru.data": "mgrit_gru.training.data",
    "mgrit_gru.cli": "mgrit_gru.tools.cli",
    "mgrit_gru.bench": "mgrit_gru.tools.bench",
    "mgrit_gru.perfmodel": "mgrit_gru.tools.perfmodel",
    "mgrit_gru.diagnostics": "mgrit_gru.tools.diagnostics",
    "mgrit_gru.cuda.bench": "mgrit_gru.tools.bench_cuda",
}


def new_name(name):
    """The module's current name for a 0.1 name (itself if it did not move)."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return name


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if new_name(name) == name:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        module = importlib.import_module(new_name(spec.name))
        spec.loader_state = module.__spec__                  # the import machinery replaces it
        return module

    def exec_module(self, module):
        # already executed at its new name; give it back its own __spec__ (its relative
        # imports and its repr go by it)
        module.__spec__ = module.__spec__.loader_state


def install():
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
