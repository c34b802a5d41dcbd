"""What `-o DIR` of `harness train` / `harness sweep` already holds, and whether this run may write there.

A directory with earlier output is never written into silently: `--resume` continues it, `--overwrite`
replaces it. `--overwrite` only ever deletes what this harness wrote (a training run or a sweep), so a
mistyped `-o` cannot wipe unrelated files. Checks run before anything is loaded; the deletion itself
happens only once every input has been validated, so a bad flag never costs the earlier run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.errors import HarnessError

FINISHED = "harness_train.json"
CKPT_PREFIX = "checkpoint-"
SWEEP_MARKERS = ("sweep.json", "points")


def _check_writable_path(out: Path) -> None:
    """-o must be a directory or a path that can become one (no file at it or above it)."""
    if out.exists() and not out.is_dir():
        raise HarnessError(f"-o {out}: is a file, not a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HarnessError(f"-o {out}: {parent} is a file, not a directory")
            break


def contents(out: Path) -> list[Path]:
    return sorted(out.iterdir()) if out.is_dir() else []


def is_training_dir(out: Path) -> bool:
    """Anything `harness train` leaves behind: the finished record, an adapter, checkpoints (or their temp dirs)."""
    return any(p.name in (FINISHED, "adapter_config.json") or p.name.startswith(CKPT_PREFIX)
               or p.name.startswith(f".{CKPT_PREFIX}") for p in contents(out))


def is_sweep_dir(out: Path) -> bool:
    return any((out / m).exists() for m in SWEEP_MARKERS)


def _foreign(out: Path, what: str) -> HarnessError:
    names = ", ".join(p.name for p in contents(out)[:3])
    return HarnessError(f"-o {out}: not empty ({names}) and not {what}; use a new or empty directory")


def check_train_dir(out: Path, resume: bool, overwrite: bool, has_checkpoint: bool) -> bool:
    """Raise unless `harness train` may use `out`; True when it holds an earlier run that must be cleared first."""
    _check_writable_path(out)
    if not contents(out):
        return False
    if not is_training_dir(out):
        raise _foreign(out, "a training run")
    if overwrite:
        return True
    if (out / FINISHED).exists():
        if resume:
            return False  # the caller reports that there is nothing left to resume
        raise HarnessError(f"-o {out}: already holds a finished training run ({FINISHED}); "
                           "pass --overwrite to replace it or use another directory")
    if has_checkpoint:
        if resume:
            return False
        raise HarnessError(f"-o {out}: has checkpoints of an unfinished run; pass --resume to continue it "
                           "or --overwrite to start again")
    if resume:
        return True  # an unfinished run that wrote no checkpoint: nothing to continue, start clean
    raise HarnessError(f"-o {out}: holds an unfinished training run that wrote no checkpoint; "
                       "pass --overwrite (or --resume) to train from scratch")


def check_sweep_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Raise unless `harness sweep` may use `out`; True when an earlier sweep there must be cleared first."""
    if resume and overwrite:
        raise HarnessError("--overwrite: --overwrite replaces what -o holds, --resume continues it: pass one of them")
    _check_writable_path(out)
    if not contents(out):
        return False
    if not is_sweep_dir(out):
        raise _foreign(out, "a sweep")
    if overwrite:
        return True
    if resume:
        return False
    raise HarnessError(f"-o {out}: already holds a sweep; pass --resume to finish it (finished points are kept) "
                       "or --overwrite to start again")


def clear(out: Path) -> None:
    """Empty `out` (kept itself: it may be a mount point or a symlink the user made)."""
    for p in contents(out):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
