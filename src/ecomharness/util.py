"""Small helpers shared by several packages."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """Where ecomharness keeps what it can rebuild: ``$ECOMHARNESS_CACHE`` or
    ``~/.cache/ecomharness``."""
    root = os.environ.get("ECOMHARNESS_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "ecomharness"


def default_mode(directory: bool = False) -> int:
    """Permissions a plain ``open``/``mkdir`` would give under the current umask
    (mkstemp/mkdtemp create files 0600 and directories 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and a rename: readers (another
    rank, a watcher) never see half a file, and a crash leaves the previous version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(payload, ensure_ascii=False, indent=2))


def load_yaml_file(path: Path, what: str) -> Any:
    """Parse a YAML file given by the user; errors name the file (and line) or say it is
    missing, as ``UserError``."""
    from ecomharness.errors import UserError

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: no such {what} file")
    return parse_yaml_text(read_user_text(path, what), path)


def read_user_text(path: Path, what: str) -> str:
    """A user's text file as UTF-8; ``UserError`` naming the file and line otherwise."""
    from ecomharness.errors import UserError

    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        f"save the {what} file as UTF-8") from exc


def parse_yaml_text(text: str, path: Path):
    """``yaml.safe_load`` with errors as ``UserError`` naming ``path:line``."""
    import yaml

    from ecomharness.errors import UserError

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc


def is_number(value: Any) -> bool:
    """An int or float that is not a bool (YAML and JSON give ``true`` as a bool, and
    Python counts it as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def did_you_mean(name: Any, choices, n: int = 1) -> str:
    """The hint every "unknown X" message carries: `` (did you mean 'x'?)`` for the
    closest choice (several, unquoted, when ``n`` > 1, as lists of task names read
    best), or "" when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(name), sorted(choices), n=n)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if n == 1 else f" (did you mean {', '.join(close)}?)"


def reject_unknown_keys(mapping: dict, allowed, where: str) -> None:
    """Raise ``UserError`` for the first key not in ``allowed``, suggesting the closest one."""
    from ecomharness.errors import UserError

    for key in mapping:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; "
                            f"expected one of {', '.join(sorted(allowed))}")


def check_share(value, where: str, below_one: bool = False) -> float:
    """A share from 0 to 1 (up to but not including 1 with ``below_one``) as a float;
    ``UserError`` naming ``where`` otherwise (a boolean is not a share)."""
    from ecomharness.errors import UserError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 \
            or (below_one and value == 1):
        upper = "up to (not including) 1" if below_one else "to 1"
        raise UserError(f"{where}: expected a share from 0 {upper}, got {value!r}")
    return float(value)


def check_value(value, hint, where: str):
    """Check one value against a type hint (int, float, bool, str, list, dict,
    ``X | None``, ``tuple[str, ...]``) and return it: a whole number given for a float
    becomes a float, a list given for a tuple a tuple. Raises ``UserError`` naming
    ``where`` and what was expected. Booleans are never numbers here: ``true`` for a
    count is a typo, not 1."""
    import types
    import typing

    from ecomharness.errors import UserError

    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if value is None and type(None) in options:
        return value
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is tuple and isinstance(value, (list, tuple)):
            (item,) = typing.get_args(option)[:1] or (object,)
            if all(isinstance(v, item) and not isinstance(v, bool) for v in value):
                return tuple(value)
        elif origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif origin in (int, str, dict, list) and isinstance(value, origin) and not isinstance(value, bool):
            return value
        elif origin is bool and isinstance(value, bool):
            return value
        elif origin not in (tuple, float, int, str, dict, list, bool, type(None)):
            return value  # a type this check does not know: the caller validates it
    names = " or ".join(_type_name(o) for o in options)
    raise UserError(f"{where}: expected {names}, got {value!r}")


def check_field_types(values: dict, cls, where: str) -> dict:
    """Check each given value against the type hint of ``cls``'s dataclass field of that
    name (``check_value``). Raises ``UserError`` naming ``where.field``."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = dict(values)
    for f in dataclasses.fields(cls):
        if f.name in values:
            out[f.name] = check_value(values[f.name], hints[f.name], f"{where}.{f.name}")
    return out


def _type_name(hint) -> str:
    import typing

    if hint is type(None):
        return "null"
    if (typing.get_origin(hint) or hint) is tuple:
        return "a list"
    if (typing.get_origin(hint) or hint) is dict:
        return "a mapping"
    if hint is list:
        return "a list"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(hint, str(hint))


@contextlib.contextmanager
def sole_writer(lock_file: Path, what: str):
    """Hold an exclusive, non-blocking ``flock`` on ``lock_file`` while the body runs, so
    that a second command writing ``what`` (a run directory, a build output) is refused
    at once with a clear message instead of both writing the same files. The kernel
    releases the lock when its holder dies, so a killed command never leaves ``what``
    locked; the small file itself stays and is reused."""
    import fcntl

    from ecomharness.errors import UserError

    lock_file = Path(lock_file)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{what}: cannot create its lock file {lock_file} ({exc.strerror or exc})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise UserError(f"{what} is being written by {holder}; wait for it to finish, or use another "
                            "output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
