"""Pinned snapshots: what ``watch`` evaluates cannot vanish under it.

HF Trainer's ``save_total_limit`` deletes old checkpoints as new ones are saved, whatever
reads them (olmoearth_pretrain #582: rotation deleted checkpoints that running
evaluations still needed). Before evaluating a checkpoint, ``watch`` pins it: hard links
to its files in ``RUN_DIR/eval/pinned/<checkpoint>@<host>.<pid>/`` (a copy where the
filesystem refuses links), evaluates the pin, and removes the pin once the record is
written. A hard link is the same file under a second name: the Trainer deleting the
checkpoint removes one name, the data stay until the pin goes too, and pinning costs
no disk (a copy costs the model's size, once per evaluation).

Only what an evaluation reads is pinned: the top-level files of the checkpoint, less the
training state (optimizer, scheduler, RNG states, DeepSpeed's ``global_step*`` folders).

A pin is trusted only when the checkpoint looked the same before and after pinning: a
Trainer rotating it meanwhile makes ``pin`` raise ``CheckpointGone``, and ``watch``
records the checkpoint as skipped (rotated away), never as a failure of the model.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
from fnmatch import fnmatch
from pathlib import Path

from ecomharness.train.run_dir import STATE_FILE, pins_dir

log = logging.getLogger("ecomharness.watch")

# Training state an evaluation never reads (HF Trainer and DeepSpeed names).
NOT_PINNED = ("optimizer*.pt", "optimizer*.bin", "scheduler.pt", "rng_state*.pth", "training_args.bin",
              "zero_to_fp32.py", "latest", "scaler.pt")
# Link errors after which a copy works: another filesystem, or one without hard links.
_COPY_INSTEAD = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


class CheckpointGone(Exception):
    """The checkpoint was deleted (rotated away) before or while it was pinned."""


def _files(checkpoint: Path) -> set[str]:
    """The names of the files to pin; ``CheckpointGone`` when the folder is gone."""
    try:
        entries = list(os.scandir(checkpoint))
    except FileNotFoundError as exc:
        raise CheckpointGone(f"{checkpoint.name} was deleted (rotated away by save_total_limit?) before it "
                             "could be pinned") from exc
    return {e.name for e in entries if e.is_file(follow_symlinks=True)
            and not any(fnmatch(e.name, pattern) for pattern in NOT_PINNED)}


def _pin_name(checkpoint: Path) -> str:
    # Host and pid: two watchers (even on two nodes sharing the run directory) each own their pin.
    return f"{checkpoint.name}@{socket.gethostname()}.{os.getpid()}"


def pin(run_dir: Path, checkpoint: Path) -> Path:
    """Pin ``checkpoint`` (a complete checkpoint of ``run_dir``); return the pin's path.

    Raises ``CheckpointGone`` (nothing left behind) when the checkpoint vanished or
    changed while it was being pinned: its files are only ever deleted, so a listing
    that is the same after the links were made says every file was linked whole.
    """
    before = _files(checkpoint)
    if STATE_FILE not in before:
        raise CheckpointGone(f"{checkpoint.name} lost its {STATE_FILE} (being rotated away) before it could be pinned")
    target = pins_dir(run_dir) / _pin_name(checkpoint)
    if target.exists():  # left by an earlier pin of this process that did not finish
        shutil.rmtree(target)
    target.mkdir(parents=True)
    copied = 0
    try:
        for name in sorted(before):
            try:
                os.link(checkpoint / name, target / name)
            except FileNotFoundError as exc:
                raise CheckpointGone(f"{checkpoint.name} was rotated away while being pinned ({name} vanished)") \
                    from exc
            except OSError as exc:
                if exc.errno not in _COPY_INSTEAD:
                    raise
                try:
                    shutil.copy2(checkpoint / name, target / name)
                except FileNotFoundError as gone:
                    raise CheckpointGone(f"{checkpoint.name} was rotated away while being copied ({name} "
                                         "vanished)") from gone
                copied += 1
        if _files(checkpoint) != before:
            raise CheckpointGone(f"{checkpoint.name} changed while being pinned (rotated away?)")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if copied:
        log.info("%s: %d file(s) copied, not linked (the filesystem refused hard links)", checkpoint.name, copied)
    return target


def release(pinned: Path) -> None:
    """Remove a pin (the checkpoint's files go with it if the Trainer deleted them)."""
    shutil.rmtree(pinned, ignore_errors=True)


@contextlib.contextmanager
def pinned(run_dir: Path, checkpoint: Path):
    """``pin`` for the duration of a ``with`` block, released however the block ends."""
    path = pin(run_dir, checkpoint)
    try:
        yield path
    finally:
        release(path)


def release_stale(run_dir: Path, log_fn=print) -> list[str]:
    """Remove the pins this host's dead watchers left (a watcher killed mid-evaluation
    leaves its pin: hard links, but a copy's disk too). Pins of other hosts are left
    alone: their processes cannot be seen from here. Returns the names removed."""
    folder = pins_dir(run_dir)
    if not folder.is_dir():
        return []
    host = socket.gethostname()
    removed = []
    for path in folder.iterdir():
        owner, _, pid = path.name.rpartition("@")[2].rpartition(".")
        if owner != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        log_fn(f"[watch] removed {len(removed)} pin(s) left by watchers no longer running: {', '.join(removed)}")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
