"""Layering of the two phases: the student side never loads the teacher side, evaluation loads neither trainer,
teacher fine-tuning does not load the student trainer, and the store does not load evaluation — checked both
statically (import statements) and at run time (sys.modules after importing each module alone)."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fasd

ROOT = Path(fasd.__file__).parent


def _modules(package: str) -> list[str]:
    path = ROOT / package.split(".", 1)[1].replace(".", "/")
    return [f"{package}.{info.name}" for info in pkgutil.iter_modules([str(path)])]


def _static_imports(module: str) -> set[str]:
    source = ROOT.parent / (module.replace(".", "/") + ".py")
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return imported


RULES = [  # (modules, forbidden prefixes)
    (_modules("fasd.student_train"), ("fasd.teacher_cache", "open_clip")),
    (_modules("fasd.training"), ("fasd.teacher_cache", "fasd.student_train", "open_clip")),
    (_modules("fasd.evaluate"), ("fasd.student_train", "fasd.teacher_cache")),
    (_modules("fasd.store_schema"), ("fasd.evaluate", "fasd.student_train", "fasd.teacher_cache")),
    (["fasd.teacher_cache.finetune"], ("fasd.student_train",)),
]
CASES = [(module, forbidden) for modules, forbidden in RULES for module in modules]


def _forbidden(names, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


def test_every_student_train_module_is_covered():
    covered = {module for module, _ in CASES}
    assert {"fasd.student_train.trainer", "fasd.student_train.losses", "fasd.student_train.students",
            "fasd.student_train.recipes", "fasd.student_train.targets", "fasd.student_train.model"} <= covered


@pytest.mark.parametrize("module, forbidden", CASES, ids=[m for m, _ in CASES])
def test_static_imports(module, forbidden):
    assert _forbidden(_static_imports(module), forbidden) == []


@pytest.mark.slow  # one fresh interpreter per package
@pytest.mark.parametrize("modules, forbidden", [(m, f) for m, f in RULES],
                         ids=[m[0].rsplit(".", 1)[0] for m, _ in RULES])
def test_run_time_imports(modules, forbidden):
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            # a run imports every registered student (the registry loads its members on first use)
            "if 'fasd.student_train.students' in sys.modules:\n"
            "    sys.modules['fasd.student_train.students'].student_kinds()\n"
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _forbidden(json.loads(result.stdout.splitlines()[-1]), forbidden) == []
