"""Built-in plugin: the gate's rule kinds."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl


@hookimpl
def ecomharness_gate_rules():
    """Absolute floor, allowed drop, required gain, and joint rules."""
    return {kind: f"ecomharness.gate.rules:rule_{kind}" for kind in ("min", "max_drop", "min_gain", "joint")}
