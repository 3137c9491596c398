"""Which NC1 a printed table or figure shows: this library's, or that of the official
script a preset reproduces (``CollapseMetrics``' docstring derives the factor ``C`` between them).

Records always hold both (``nc1`` and ``nc1_official``); only what is printed changes.
"""

from __future__ import annotations

OFFICIAL_REPOSITORY = "dmbeaglehole/neural_collapse_rfm"
OFFICIAL_SCRIPTS = ("deep_rfm.py", "nc_nn.py", "nc_nn_ratio.py")


def nc1_key(script: str | None) -> str:
    """The record key of the NC1 to print: ``"nc1_official"`` for an official script,
    else ``"nc1"``."""
    if script is not None and script not in OFFICIAL_SCRIPTS:
        raise ValueError(f"script must be one of {OFFICIAL_SCRIPTS} or None; got {script!r}.")
    return "nc1" if script is None else "nc1_official"


def convention_header(script: str | None) -> str:
    """The line a table starts with, saying whose NC1 it prints."""
    if nc1_key(script) == "nc1":
        return ("NC1 = tr(Sigma_W) / tr(Sigma_B), dnc_jax's convention (the official scripts "
                "print NC1 / C: nc1_official in the records)")
    return (f"NC1 in the convention of {OFFICIAL_REPOSITORY}'s {script} (Sigma_B / C, "
            f"Sigma_W / (C n)): dnc_jax's tr(Sigma_W) / tr(Sigma_B) divided by C")


def nc1_label(script: str | None) -> str:
    """The axis label of the NC1 ``nc1_key(script)`` selects."""
    return "NC1" if nc1_key(script) == "nc1" else f"NC1 ({script})"


def trace_ratio_point(script: str | None) -> str:
    """Where a layer's trace ratios ``tr(Sigma_W)/tr(Sigma_T)`` and ``tr(Sigma_B)/tr(Sigma_T)``
    are read for the script a preset reproduces (``neural_collapse_rfm`` at eee0604):
    ``"input"`` for ``nc_nn_ratio.py`` (``get_class_variance(phiX, ...)`` of the layer's
    input, lines 360 and 369); ``"output"`` for ``nc_nn.py`` (``phiX_next``, the layer's
    output, lines 511-517; its saved and plotted ratios are the last layer's, lines 722-725
    and ``gen_nn_plots.py`` lines 112-115) and for this library's own presets, which follow
    the paper's figures."""
    nc1_key(script)  # checks the name
    return "input" if script == "nc_nn_ratio.py" else "output"
