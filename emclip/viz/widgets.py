"""ipywidgets explorers that degrade gracefully.

Every explorer in the kit is ``ipywidgets.interact`` over a plain function of the package (which has
its own unit test), and every notebook draws a static figure beside it. In batch runs (nbval in CI,
papermill, ``emclip run`` / ``emclip sweep``) nobody moves a slider, and widget comm messages are
the one place where a headless kernel has been seen to stall (papermill #723, nbclient #312), so
those runs set ``EMCLIP_NO_WIDGETS=1`` and :func:`explore` then renders the callback once with its
initial values instead of building the controls.
"""

from __future__ import annotations

import os
from collections.abc import Callable

NO_WIDGETS_ENV = "EMCLIP_NO_WIDGETS"


def widgets_enabled() -> bool:
    """False in batch runs (``$EMCLIP_NO_WIDGETS`` set) or when ipywidgets is not installed."""
    if os.environ.get(NO_WIDGETS_ENV, "0").strip().lower() in {"1", "true", "yes"}:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _initial(control):
    """The starting value of an ipywidgets control, or of a plain value/tuple/list abbreviation."""
    if hasattr(control, "value"):
        return control.value
    if isinstance(control, list):
        return control[0]
    if isinstance(control, tuple) and len(control) in (2, 3) and all(isinstance(v, (int, float)) for v in control):
        low, high = control[0], control[1]
        return type(low)((low + high) / 2) if isinstance(low, float) else (low + high) // 2
    return control


def explore(callback: Callable, **controls):
    """An ``ipywidgets.interactive`` explorer of ``callback``; in batch runs, ``callback`` at the initial values.

    ``controls`` are ipywidgets controls or interact's abbreviations (``(min, max)``, a list of options,
    a fixed value). Returns the explorer widget (controls + output; the callback has run once with
    the initial values), which Jupyter shows as the cell's result: call ``explore(...)`` last in a
    cell. Unlike ``ipywidgets.interact``, which displays the widget and returns the callback (a
    stray ``Out[n]: <function ...>`` line), nothing else is printed. Control labels are shown at
    their natural width (``style.description_width = "initial"`` unless the control sets one). In
    batch mode it returns what the callback returns.
    """
    if widgets_enabled():
        import ipywidgets

        for control in controls.values():  # labels at their natural width: "task_domain", not "task_dom..."
            style = getattr(control, "style", None)
            if style is not None and style.has_trait("description_width") and not style.description_width:
                style.description_width = "initial"
        return ipywidgets.interactive(callback, **controls)
    values = {name: _initial(control) for name, control in controls.items()}
    print(f"(interactive explorer off in this batch run; showing {callback.__name__}({values}))")
    return callback(**values)
