"""The plugin manager: finds plugins through the ``ecomharness`` entry-point group.

Built-in features are declared in our own ``pyproject.toml`` under the same group, so
they load exactly like third-party plugins and can be switched off the same way.

Environment variables, for debugging:

``ECOMHARNESS_PLUGINS``
    Comma-separated entry-point names: load only these plugins (default: all).
``ECOMHARNESS_TRACE_HOOKS``
    Set to ``1`` to print every hook call and its result to stderr.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from ecomharness import hookspecs

ENTRY_POINT_GROUP = "ecomharness"


class PluginError(RuntimeError):
    """A plugin could not be loaded or returned something unusable."""


@dataclass(frozen=True)
class PluginInfo:
    """What ``ecomharness plugins`` shows about one loaded plugin."""

    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...] = field(default_factory=tuple)


def _selected_names() -> set[str] | None:
    raw = os.environ.get("ECOMHARNESS_PLUGINS", "").strip()
    if not raw:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_points() -> list[metadata.EntryPoint]:
    # entry_points() de-duplicates distributions by name, so an editable and a regular
    # install of the same project on sys.path do not register a plugin twice.
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"], dist.version


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager with every selected plugin registered.

    Raises ``PluginError`` naming the entry point and its distribution when a plugin
    fails to import, so a broken third-party package is not mistaken for a core bug.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    wanted = _selected_names()
    found = set()
    for ep in _entry_points():
        if wanted is not None and ep.name not in wanted:
            continue
        found.add(ep.name)
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # any import-time failure of foreign code
            dist, version = _distribution_of(ep)
            raise PluginError(
                f"plugin {ep.name!r} ({ep.value}) from {dist} {version} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        pm.register(plugin, name=ep.name)
        pm._ecomharness_ep = getattr(pm, "_ecomharness_ep", {})  # noqa: SLF001
        pm._ecomharness_ep[ep.name] = ep  # noqa: SLF001
    if wanted is not None and (missing := wanted - found):
        known = ", ".join(ep.name for ep in _entry_points()) or "none"
        raise PluginError(
            f"ECOMHARNESS_PLUGINS names {', '.join(sorted(missing))}, which no installed "
            f"package provides (installed: {known})"
        )
    pm.check_pending()
    if os.environ.get("ECOMHARNESS_TRACE_HOOKS", "") not in ("", "0"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[ecomharness hooks] {msg}"))
        pm.enable_tracing()
    return pm


def reset_plugin_manager() -> None:
    """Forget the cached manager, so the next call re-reads entry points (tests use it)."""
    get_plugin_manager.cache_clear()


def list_plugins() -> list[PluginInfo]:
    """Describe every registered plugin: entry-point name, module, distribution, hooks."""
    pm = get_plugin_manager()
    eps = getattr(pm, "_ecomharness_ep", {})
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        hooks = tuple(sorted(impl.name for impl in pm.get_hookcallers(plugin) or ()))
        dist, version = _distribution_of(eps[name]) if name in eps else ("?", "?")
        module = getattr(plugin, "__name__", type(plugin).__name__)
        infos.append(PluginInfo(name, module, dist, version, hooks))
    return infos


def plugin_results(hook_name: str) -> list[tuple[str, object]]:
    """Call a hook on every plugin and return ``(plugin name, result)`` pairs.

    Unlike a plain hook call this keeps track of which plugin said what, which the
    ``tasks`` and ``plugins`` commands need to show where each task comes from.
    Plugins that return None are left out.
    """
    pm = get_plugin_manager()
    caller = getattr(pm.hook, hook_name)
    results = []
    # get_hookimpls() lists in call order reversed (last registered first); list in
    # registration order so that later plugins override earlier ones deterministically.
    trace = os.environ.get("ECOMHARNESS_TRACE_HOOKS", "") not in ("", "0")
    for impl in reversed(caller.get_hookimpls()):
        # Called one by one (to know who said what), so pluggy's own tracing never sees
        # these calls: trace them here.
        value = impl.function(**{arg: None for arg in impl.argnames})
        if trace:
            shown = "None" if value is None else f"{type(value).__name__} of {len(value)}" \
                if hasattr(value, "__len__") else type(value).__name__
            sys.stderr.write(f"[ecomharness hooks] {hook_name} -> {impl.plugin_name}: {shown}\n")
        if value is not None:
            results.append((impl.plugin_name, value))
    return results
