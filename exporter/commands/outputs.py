"""Output paths of the commands, checked before the work that fills them.

A file or directory to write may not exist yet, nor its folders (they are created when written);
what must hold is that the path is not the other kind and that the nearest existing folder above
it takes new entries. A path that fails gets an InputError naming it and the flag, so a long
training or import does not end in a traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from estimator.errors import InputError


def output_file(
    path: str | Path, flag: str, reads: Sequence[tuple[str, str | Path | None]] = ()
) -> Path:
    """A file the command will write (its folders are created on writing); not one of the
    files it `reads` ((flag, path) pairs), which writing would destroy; one that cannot be
    created is said before the work, not after it."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory; expected a file to write", source=str(path), field=flag)
    for other_flag, other in reads:
        if other is not None and _same_file(path, Path(other)):
            raise InputError(
                f"is the file {other_flag} reads: writing it would destroy the input; "
                "choose another path",
                source=str(path),
                field=flag,
            )
    _check_writable_above(path, flag)
    if path.exists():
        if not os.access(path, os.W_OK):
            raise InputError("cannot write it", source=str(path), field=flag)
        return path
    missing = [p for p in path.absolute().parents if not p.exists()]
    try:  # a trial: create it with its folders, then remove what was created
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=False)
        path.unlink()
    except OSError as exc:
        raise InputError(f"cannot create: {exc.strerror}", source=str(path), field=flag) from None
    finally:
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path


def output_dir(path: str | Path, flag: str) -> Path:
    """A directory the command will write into (created, with its folders, on writing); one
    that cannot be created is said before the work, not after it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(
            "is a file; expected a directory to write into", source=str(path), field=flag
        )
    _check_writable_above(path, flag)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError("cannot write into it", source=str(path), field=flag)
        return path
    missing = [path, *(p for p in path.absolute().parents if not p.exists())]
    try:  # a trial: create it with its folders, then remove what was created
        path.mkdir(parents=True)
    except OSError as exc:
        raise InputError(f"cannot create: {exc.strerror}", source=str(path), field=flag) from None
    for folder in missing:
        with contextlib.suppress(OSError):
            folder.rmdir()
    return path


def prepare_parent(path: Path) -> Path:
    """Create the folders above a file about to be written; the file's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        with contextlib.suppress(OSError):
            return os.path.samefile(a, b)
    return a.absolute().resolve() == b.absolute().resolve()


def _check_writable_above(path: Path, flag: str) -> None:
    above = path.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise InputError(f"{above} is a file, not a folder", source=str(path), field=flag)
    if not os.access(above, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {above}", source=str(path), field=flag)


__all__ = ["output_dir", "output_file", "prepare_parent"]
