"""Name -> object registries filled by plugin hooks, loaded lazily, failing helpfully."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ecomharness.errors import UserError
from ecomharness.plugins import PluginError, plugin_results
from ecomharness.util import did_you_mean


class Registry:
    """Maps names to objects or ``"module:attr"`` strings imported on first use.

    Filled once from one hook (every plugin's mapping merged); a name given by two
    plugins is an error naming both. Unknown names raise with the closest known ones.
    """

    def __init__(self, kind: str, hook_name: str):
        self.kind = kind
        self.hook_name = hook_name
        self._entries: dict[str, tuple[str, Any]] | None = None

    def _load(self) -> dict[str, tuple[str, Any]]:
        if self._entries is None:
            entries: dict[str, tuple[str, Any]] = {}
            for plugin, mapping in plugin_results(self.hook_name):
                for name, target in dict(mapping).items():
                    if name in entries:
                        raise PluginError(
                            f"{self.kind} {name!r} is provided by both plugin "
                            f"{entries[name][0]!r} and plugin {plugin!r}"
                        )
                    entries[name] = (plugin, target)
            self._entries = entries
        return self._entries

    def reset(self) -> None:
        """Forget the entries, so the next lookup asks the plugins again."""
        self._entries = None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._load())

    def find(self, name: str) -> Any:
        """The object registered under ``name`` (imported on first use), or None when
        no plugin registered it."""
        return self.get(name) if name in self._load() else None

    def plugin_of(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._lookup(name)[0]

    def get(self, name: str) -> Callable:
        """The object registered under ``name``, importing it on first use."""
        plugin, target = self._lookup(name)
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            try:
                target = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise PluginError(
                    f"plugin {plugin!r}: {self.kind} {name!r} points at {target!r}, "
                    f"which cannot be imported: {exc}"
                ) from exc
            self._entries[name] = (plugin, target)  # type: ignore[index]
        return target

    def _lookup(self, name: str) -> tuple[str, Any]:
        entries = self._load()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise UserError(f"unknown {self.kind} {name!r}{did_you_mean(name, entries, n=3)}; known: {known}")
        return entries[name]


record_formats = Registry("record format", "ecomharness_record_formats")
data_sources = Registry("data source format", "ecomharness_data_sources")
filters = Registry("data filter", "ecomharness_filters")
mixers = Registry("mixer", "ecomharness_mixers")
gate_rules = Registry("gate rule kind", "ecomharness_gate_rules")
selectors = Registry("selector", "ecomharness_selectors")
topic_classifiers = Registry("topic classifier", "ecomharness_topic_classifiers")
aggregations = Registry("aggregation", "ecomharness_aggregations")
