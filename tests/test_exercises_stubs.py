"""Students do the thinking: every exercise stub in a notebook fails its checker untouched, and every
worked solution (emclip.exercises.solutions) passes it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from emclip.exercises import EXERCISES, attempt, solutions

ROOT = Path(__file__).resolve().parents[1]
IDS = [f"{e.notebook}:{e.function}" for e in EXERCISES]


def _stub(exercise) -> tuple[ast.FunctionDef, str]:
    source = (ROOT / "notebooks" / f"{exercise.notebook}.py").read_text()
    defs = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == exercise.function]
    assert len(defs) == 1, f"{exercise.notebook}.py: one top-level `def {exercise.function}` stub"
    return defs[0], source


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_the_stub_holds_no_answer_and_fails_its_checker(exercise):
    node, source = _stub(exercise)
    body = [n for n in node.body if not _is_docstring(n)]
    assert len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0]), (
        f"{exercise.function}: the starter must be only a docstring and `raise NotImplementedError`")
    namespace: dict = {}
    exec(compile(ast.Module([node], type_ignores=[]), exercise.notebook, "exec"), namespace)
    with pytest.raises(NotImplementedError):
        exercise.check(namespace[exercise.function])
    call = re.search(rf"^attempt\((?P<checker>[\w.]+), {exercise.function}\)$", source, re.M)
    assert call and call["checker"].split(".")[-1] == exercise.checker.split(":")[1], (
        f"{exercise.notebook}.py: run `attempt({exercise.checker.split(':')[1]}, {exercise.function})` after the stub")


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_the_worked_solution_passes_its_checker(exercise):
    assert exercise.check(exercise.solution())


def test_every_stub_in_the_notebooks_is_registered():
    registered = {(e.notebook, e.function) for e in EXERCISES}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("my_"):
                assert (path.stem, node.name) in registered, f"{path.name}: {node.name} is not in EXERCISES"


def test_solutions_do_not_call_the_references_they_are_checked_against():
    tree = ast.parse(inspect.getsource(solutions))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("emclip")], imported


def test_attempt_reports_without_raising(capsys):
    exercise = next(e for e in EXERCISES if e.function == "my_em_iterations")
    checker = exercise.check

    def my_em_iterations(x, mu, iters, lam):
        raise NotImplementedError

    assert attempt(checker, my_em_iterations) is False
    assert "not attempted yet" in capsys.readouterr().out
    assert attempt(checker, lambda x, mu, iters, lam: (mu, x)) is False
    printed = capsys.readouterr().out
    assert "not yet" in printed and "shapes" in printed
    assert attempt(checker, solutions.my_em_iterations) is True
    assert "Correct" in capsys.readouterr().out
