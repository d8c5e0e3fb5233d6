"""What the sub-commands share: argument types, the argument checks made before any work, and
how an error becomes one readable line.

A user's error (an :class:`emclip.errors.EmclipError`, a missing or unwritable path, Ctrl-C)
is printed by :func:`emclip.cli.main` as one line, with the traceback only under ``--debug``;
any other exception is a bug in the kit and keeps its traceback.
"""

from __future__ import annotations

import argparse

from emclip.errors import ConfigError, EmclipError

#: exceptions that mean "the user can fix this" (exit code 2); anything else is a bug
USER_ERRORS = (EmclipError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError,
               FileExistsError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

_OS_FIXES = {
    FileNotFoundError: "check the path",
    PermissionError: "choose a location you can read and write, or fix its permissions",
    NotADirectoryError: "a part of the path is a file, not a folder",
    IsADirectoryError: "give a file, not a folder",
    FileExistsError: "remove it or choose another name",
}


def error_line(err: BaseException) -> str:
    """The error as one line: its message with whitespace collapsed; an operating-system error
    raised without a message of the kit's (``[Errno 2] ...``) gets the file name and a fix."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        where = f": {err.filename}" if err.filename is not None else ""
        fix = next((text for kind, text in _OS_FIXES.items() if isinstance(err, kind)), "check the path")
        return f"{err.strerror}{where} ({fix})."
    return " ".join(str(err).split()) or type(err).__name__


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (``--steps 0`` is refused, not read as "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def task_name(text: str) -> str:
    """argparse type: a task name (``fundus`` or ``cardiac``)."""
    from emclip.tasks import get_task

    try:
        return get_task(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def resolve_profile(name: str | None):
    """The run profile ``name`` (``None``: ``$EMCLIP_PROFILE``); ConfigError when unknown."""
    from emclip.runtime import get_profile

    try:
        return get_profile(name)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def check_domains(task, domains) -> list[str]:
    """``domains`` when each is a domain of ``task``; ConfigError listing the valid ones."""
    from emclip.tasks import get_task

    spec = get_task(task)
    unknown = [d for d in domains if d not in spec.domains]
    if unknown:
        raise ConfigError(f"unknown {spec.name} domain(s) {', '.join(map(repr, unknown))}; valid: "
                          f"{', '.join(spec.domains)}.")
    return list(domains)


def check_models(names) -> list[str]:
    """``names`` when each is a factory model; ConfigError listing the valid ones."""
    from emclip.models import list_models

    valid = list_models()
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ConfigError(f"unknown models {unknown}; valid: {', '.join(valid)}.")
    return list(names)
