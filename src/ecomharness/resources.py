"""Where the files that ship with the package (tasks/, train/) are on this install."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_path(name: str) -> Path:
    """Return the directory of a bundled top-level folder, ``"tasks"`` or ``"train"``.

    A wheel carries them under ``ecomharness/_bundled/``; a source checkout or an
    editable install reads them from the repository root, two levels above ``src/``.
    """
    if name not in ("tasks", "train"):
        raise ValueError(f"unknown bundled folder {name!r}: expected 'tasks' or 'train'")
    installed = _PACKAGE_DIR / "_bundled" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"bundled folder {name!r} not found at {installed} or {checkout}: "
        "the installation is incomplete; reinstall ecomharness"
    )
