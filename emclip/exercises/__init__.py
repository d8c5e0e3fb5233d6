"""The notebooks' code exercises: checkers that explain mistakes, and a registry of every exercise.

Each exercise is a stub in a notebook (``def my_...: raise NotImplementedError``) that the student
replaces, followed by ``attempt(checker, my_...)``. A checker calls the student's function on test
cases, compares it with the kit's reference and raises ``AssertionError`` with a hint when it
differs; :func:`attempt` turns that into a printed verdict, so that a notebook with untouched
stubs still runs top to bottom (nbval, ``emclip run``). Worked solutions, for instructors, live in
:mod:`emclip.exercises.solutions` (written independently of the references they are checked
against); ``tests/test_exercises_stubs.py`` checks that every stub fails its checker and every
solution passes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["EXERCISES", "Exercise", "attempt"]


def attempt(checker: Callable, student_fn: Callable) -> bool:
    """Run ``checker(student_fn)`` and print the verdict; True when the checker accepts it.

    A stub that still raises ``NotImplementedError`` prints "not attempted yet"; a wrong answer
    prints the checker's hint. Nothing is raised, so the notebook runs on."""
    name = getattr(student_fn, "__name__", "your function")
    try:
        result = checker(student_fn)
    except NotImplementedError:
        print(f"{name}: not attempted yet. Replace `raise NotImplementedError` with your code and run the cell again.")
        return False
    except AssertionError as err:
        print(f"{name}: not yet. {err}")
        return False
    if isinstance(result, str):
        print(result)
    return True


@dataclass(frozen=True)
class Exercise:
    """One code exercise: where its stub is, which checker judges it, and its worked solution."""

    notebook: str  #: the notebook's stem, e.g. "04_em_aggregation"
    function: str  #: the stub's name in the notebook (and of the solution)
    checker: str  #: "module:function" of the checker

    def check(self, student_fn: Callable):
        module, name = self.checker.split(":")
        return getattr(importlib.import_module(module), name)(student_fn)

    def solution(self) -> Callable:
        from emclip.exercises import solutions

        return getattr(solutions, self.function)


EXERCISES = (
    Exercise("01_multicentre_data", "my_decode", "emclip.exercises.data:check_decode_fundus_mask"),
    Exercise("01_multicentre_data", "my_rician", "emclip.exercises.data:check_rician_noise"),
    Exercise("03_clip_features", "my_ensemble", "emclip.exercises.clip:check_prompt_ensemble"),
    Exercise("03_clip_features", "my_similarity", "emclip.exercises.clip:check_similarity_map"),
    Exercise("04_em_aggregation", "my_em_iterations", "emclip.exercises.em:check_em_iterations"),
    Exercise("05_decoder_training", "my_film", "emclip.exercises.training:check_film"),
    Exercise("05_decoder_training", "my_cosine_logits", "emclip.exercises.training:check_cosine_logits"),
    Exercise("06_cross_domain_evaluation", "my_dice", "emclip.exercises.evaluation:check_dice"),
    Exercise("07_parameter_sweeps", "my_best", "emclip.exercises.sweep:check_best_params"),
)
