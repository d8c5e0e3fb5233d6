"""The kit's error classes: a user's mistake is an :class:`EmclipError`; anything else is a bug.

Every error the kit raises for something the *user* can fix (a wrong argument, a missing or
mismatched file, an unknown name, weights that are not reachable offline) is an
:class:`EmclipError` whose message names the problem and the fix. The ``emclip`` command prints
such an error as one line (the traceback only with ``--debug``); any other exception is treated
as a bug in the kit and shows its traceback.

The subclasses also derive from the built-in class that code outside the kit would expect
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EmclipError",
    "InputError",
    "RunMismatchError",
]


class EmclipError(Exception):
    """Base class: something the user asked for cannot be done; the message says how to fix it."""


class ConfigError(EmclipError, ValueError):
    """A configuration key, argument or parameter has the wrong type, range or name."""


class InputError(EmclipError, ValueError):
    """A tensor or array given to the kit has the wrong shape, dtype or values (NaN, out of range)."""


class DataError(EmclipError, ValueError):
    """Data files are missing, empty, unreadable or inconsistent with each other."""


class CheckpointError(EmclipError, ValueError):
    """A checkpoint file is missing, truncated, not an emclip checkpoint, or for another model."""


class RunMismatchError(CheckpointError):
    """A checkpoint's run record differs from the run that was asked for (resume or reuse refused)."""
