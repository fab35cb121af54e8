"""Explorer widgets that degrade to a static figure when nobody can move a slider.

In JupyterLab, :func:`explore` shows ``ipywidgets.interact`` sliders. Under nbval, the course
runner or any headless kernel (``LACOS_STATIC_WIDGETS=1``, set by ``make``, or ``CI``), it calls
the function once with the default values, so the notebook still shows the figure.
"""

from __future__ import annotations

from collections.abc import Callable

from lacos_helpers.config import env_flag


def static_mode() -> bool:
    """True when widgets cannot be used interactively (headless execution)."""
    return env_flag("LACOS_STATIC_WIDGETS") or env_flag("CI")


def explore(fn: Callable, **sliders):
    """Interactive ``fn(**values)`` with one slider per keyword.

    Each keyword is ``(options, default)`` where ``options`` is a list of values (a selection
    slider) or a ``(min, max, step)`` tuple. Returns whatever ``fn`` returns in static mode,
    the interact widget otherwise.
    """
    if not sliders:
        raise ValueError("explore() needs at least one slider")
    defaults = {name: default for name, (_, default) in sliders.items()}
    if static_mode():
        return fn(**defaults)
    import ipywidgets as widgets

    controls = {}
    for name, (options, default) in sliders.items():
        if isinstance(options, tuple) and len(options) == 3:
            lo, hi, step = options
            cls = widgets.IntSlider if all(isinstance(v, int) for v in options) else \
                widgets.FloatSlider
            controls[name] = cls(value=default, min=lo, max=hi, step=step, description=name,
                                 continuous_update=False)
        else:
            controls[name] = widgets.SelectionSlider(options=list(options), value=default,
                                                     description=name, continuous_update=False)
    return widgets.interact(fn, **controls)
