"""Where commands write. An output directory is checked before the work that fills it starts (it can
be created and written to), and files a user already made are replaced only when asked to
(``replace=True``, the commands' ``--force``); otherwise ``OutputExistsError`` says what is there.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Iterable


class OutputExistsError(ValueError):
    """The output would replace earlier results; the message is one line naming ``--force``."""


def writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and its parents) and check that a file can be written in it.

    Raises ``NotADirectoryError`` when ``path`` (or a parent) is a file, ``PermissionError`` for a
    read-only place, and whatever OSError creating a small file meets (a full disk).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a directory", str(path))
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".s3ta-write-test-") as probe:
        probe.write(b"0")
        probe.flush()
    return path


def creatable_dir(path: str | Path) -> Path:
    """Check, without creating anything, that ``path`` is or can become a writable directory: the
    nearest existing ancestor must be a writable directory. Raises ``NotADirectoryError`` or
    ``PermissionError`` naming the culprit (``writable_dir`` is the check that creates and writes)."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "is a file, not a directory", str(parent))
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "is not writable", str(parent))
            break
    return path


def refuse_to_replace(directory: str | Path, names: Iterable[str], what: str, replace: bool) -> list[Path]:
    """The files ``names`` that exist in ``directory``; ``OutputExistsError`` if there are any and
    ``replace`` is False. ``what`` names the earlier results in the message ("an evaluation")."""
    directory = Path(directory)
    existing = [directory / name for name in names if (directory / name).exists()]
    if existing and not replace:
        raise OutputExistsError(f"{directory} already holds {what} ({existing[0].name}); pass --force to replace "
                                "it, or choose another --out")
    return existing
