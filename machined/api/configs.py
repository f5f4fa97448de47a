"""Applying a new machine config at run time, with try mode and the persistence rules.

decisions.md "Which config": an applied config is written back atomically to
the config path (``--config``, or ``<state-dir>/config.yaml``) so the file and
the running node never diverge; a config applied in try mode lives in
``<state-dir>/config.try.yaml`` and is published at once, but reaches the
config path only when confirmed. Unconfirmed, it is rolled back at its
deadline (here) or at the next start (``NodeOptions.from_args``).

The file is written before the config is published: if the write fails the
node keeps running the old config and the caller gets the error.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netd.config import ConfigError, LoadedConfig, load_config
from netd.kernel.files import replace_file

log = logging.getLogger("machined.config")

DEFAULT_TRY_TIMEOUT = 60.0


class ApplyMode(enum.StrEnum):
    AUTO = "auto"
    NO_REBOOT = "no-reboot"
    TRY = "try"


class ApplyError(Exception):
    """The config could not be applied; ``lines`` are the problems, one per line."""

    def __init__(self, lines: list[str], invalid: bool = True) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.invalid = invalid  # the config itself is wrong (vs. the node could not store it)


@dataclass
class ApplyResult:
    mode: ApplyMode
    rollback_at: float | None = None  # wall-clock time of the automatic rollback (try mode)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    text: str
    loaded: LoadedConfig
    rollback_at: float
    timer: asyncio.TimerHandle


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` in one step (:func:`netd.kernel.files.replace_file`:
    a crash leaves the old file or the new one, never a truncated one).

    An existing file keeps its mode; a new one is 0600 (configs hold secrets).
    """
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
    replace_file(path, text.encode(), mode)


class ConfigManager:
    """The committed config, an optional pending try, and the rollback timer.

    ``publish`` makes a config the running one (``Node.set_config``).
    Runs on the event loop's thread (the API handlers call it from there).
    """

    def __init__(
        self,
        config_path: str,
        try_path: str,
        committed: LoadedConfig,
        publish: Callable[[LoadedConfig], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.try_path = try_path
        self.committed = committed
        self._publish = publish
        self._clock = clock
        self.pending: _Pending | None = None

    def apply(self, text: str, mode: ApplyMode, timeout: float = DEFAULT_TRY_TIMEOUT) -> ApplyResult:
        """Validate ``text`` and apply it; :class:`ApplyError` changes nothing."""
        try:
            loaded = load_config(text)
        except ConfigError as e:
            raise ApplyError(e.lines()) from None
        warnings = [str(w) for w in loaded.warnings]
        if mode is ApplyMode.TRY:
            if timeout <= 0:
                raise ApplyError([f"try mode needs a positive timeout, not {timeout:g}s"])
            self._store(self.try_path, text)
            self._cancel_pending()
            loop = asyncio.get_running_loop()
            at = self._clock() + timeout
            self.pending = _Pending(text, loaded, at, loop.call_later(timeout, self.rollback))
            log.info("config applied in try mode; rolls back in %gs unless confirmed", timeout)
            self._publish(loaded)
            return ApplyResult(mode, at, warnings)
        self._store(self.config_path, text)
        self._drop_pending()
        self.committed = loaded
        log.info("config applied (%s), written to %s", mode, self.config_path)
        self._publish(loaded)
        return ApplyResult(mode, None, warnings)

    def confirm(self) -> None:
        """Keep the config applied in try mode: it becomes the config at the config path."""
        p = self.pending
        if p is None:
            raise ApplyError(["no config applied in try mode is waiting for confirmation"], invalid=False)
        self._store(self.config_path, p.text)
        self._drop_pending()
        self.committed = p.loaded
        log.info("config applied in try mode confirmed, written to %s", self.config_path)

    def rollback(self) -> None:
        """Go back to the committed config (the try timed out)."""
        if self.pending is None:
            return
        self._drop_pending()
        log.warning("config applied in try mode was not confirmed in time: rolled back")
        self._publish(self.committed)

    def close(self) -> None:
        """Stop the timer; a pending try stays on disk and is rolled back at the next start."""
        if self.pending is not None:
            self.pending.timer.cancel()

    def _cancel_pending(self) -> None:
        if self.pending is not None:
            self.pending.timer.cancel()
            self.pending = None

    def _drop_pending(self) -> None:
        self._cancel_pending()
        try:
            os.unlink(self.try_path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("cannot remove %s: %s", self.try_path, e.strerror)

    @staticmethod
    def _store(path: str, text: str) -> None:
        try:
            write_atomically(path, text)
        except OSError as e:
            raise ApplyError([f"cannot write {path}: {e.strerror or e}"], invalid=False) from None
