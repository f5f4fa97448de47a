"""Atomic file writes: THE helper for every file machined (and the discovery service)
replaces — ``--etc-dir`` files, ``--state-dir`` records (``applied.json``, the
platform cache, identities), the config written back by ``apply-config``.

decisions.md: ``resolv.conf`` and ``hosts`` are written into the etc dir, not
bind-mounted over ``/etc`` as Talos does. A reader (a resolver library opening
``resolv.conf`` at any moment) must see either the old or the new content, never
a half-written file, so the content goes to a temporary file in the same
directory, is fsynced, and is renamed over the target (rename is atomic within a
file system); the directory is fsynced too so the rename survives a crash.

A file whose content and mode are already right is not written at all: steady
state and restarts leave the inode and mtime alone (file watchers, e.g. a DNS
cache reloading on change, are not woken for nothing).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import Any

DIR_MODE = 0o755


def _current(path: str) -> tuple[bytes, int] | None:
    """Content and permission bits of a regular file at ``path``; None if it is absent or
    not a regular file (a symlink or a directory is replaced, never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    with open(path, "rb") as f:
        return f.read(), stat.S_IMODE(st.st_mode)


def fsync_dir(directory: str) -> None:
    """Make the directory entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(
    path: str | os.PathLike[str], contents: bytes, mode: int = 0o644, *, durable: bool = True
) -> None:
    """Replace ``path`` by a regular file holding ``contents`` (permission bits ``mode``)
    in one step: a crash or a power loss leaves the old file or the new one, never a
    truncated one.

    The content goes to a temporary file in the same directory, which is fsynced
    and renamed over the target (rename is atomic within a file system); then the
    directory is fsynced so the rename itself survives a power loss. Parent
    directories are created (0755). ``durable=False`` skips both fsyncs (the
    rename stays atomic against a crash of the process, not of the machine).
    Raises OSError; the target is then unchanged and no temporary file is left.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), stat.S_IMODE(mode))  # mkstemp creates 0600
            f.write(contents)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)


def write_if_changed(path: str, contents: bytes, mode: int = 0o644) -> bool:
    """Make ``path`` a regular file holding ``contents`` with permission bits ``mode``.

    Returns True when the file was (re)written (:func:`replace_file`), False when it
    already matched (a mode-only difference is fixed with chmod, without rewriting:
    returns False). Raises OSError on failure; the target is then unchanged.
    """
    mode = stat.S_IMODE(mode)
    cur = _current(path)
    if cur is not None and cur[0] == contents:
        if cur[1] != mode:
            os.chmod(path, mode)
        return False
    replace_file(path, contents, mode)
    return True


def yaml_map(text: str, path: str, error: type[Exception], want: str = "a map") -> dict[str, Any]:
    """A small state file (``node-identity.yaml``, ``kubespan-identity.yaml``) as a map;
    ``error`` (naming the file) when it is not YAML or not a map."""
    from ruamel.yaml import YAML  # only the identity files need it: off the start-up path
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        raise error(f"{path}: not YAML: {e}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: want {want}, got {type(data).__name__}")
    return data
