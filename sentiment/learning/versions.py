"""Model versions: the base model plus the feedback it has absorbed.

A version is ``NAME.npz`` (the model's state, see
:class:`sentiment.models.protocol.State`) and ``NAME.json``
(parent, range of feedback ids it contains, holdout accuracy, sha256 of the
npz, base model id, time). ``CURRENT`` names the version in force and is
switched atomically. A version whose checksum, base model or JSON does not
check out is skipped with a log line, and its parent is used.

Where these files live is a :class:`~sentiment.storage.log.VersionFiles`:
the models folder of the instance (:class:`FolderFiles`, one host), or the
feedback log's database when several hosts share it, so that every host
publishes into, and rolls back along, one chain of versions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sentiment.files import atomic_write, sha256_bytes
from sentiment.locks import HostLock
from sentiment.models.protocol import State
from sentiment.storage.log import VersionFiles

log = logging.getLogger(__name__)

BASE = "base"
NAME = re.compile(r"^v(\d{6})$")


class CorruptVersion(Exception):  # noqa: N818 (public name)
    pass


@dataclass(frozen=True)
class VersionInfo:
    name: str
    parent: str | None
    first_feedback_id: int | None  # first verdict id this version adds to its parent
    last_feedback_id: int  # every accepted verdict with id <= this is in the model
    holdout_accuracy: float | None
    sha256: str | None
    base_id: str
    created: str
    reason: str = "checkpoint"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FolderFiles:
    """Version files in a folder of this host, each written by temporary file, fsync and
    rename; the lock is a ``flock`` that every process of the host shares."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = HostLock(self.folder / "versions.lock")

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def write(self, name: str, data: bytes) -> None:
        atomic_write(self.folder / name, data)

    def exists(self, name: str) -> bool:
        return (self.folder / name).exists()

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # deleted by another process
            (self.folder / name).unlink()

    def names(self, suffix: str) -> list[str]:
        return [p.name for p in self.folder.glob(f"v*{suffix}")]


class VersionStore:
    def __init__(self, folder: Path, base_id: str, base_state: State,
                 decode: Callable[[bytes], State],
                 base_accuracy: float | None = None,
                 files: VersionFiles | None = None) -> None:
        """``decode``: bytes of a saved state -> the state (ValueError if it does not
        fit the base model). ``folder``: this host's cache (the holdout's features);
        ``files``: where versions live (default: in ``folder``)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files: VersionFiles = files or FolderFiles(self.folder)
        self.base_id = base_id
        self.base_state = base_state
        self._decode = decode
        self.base_info = VersionInfo(BASE, None, None, 0, base_accuracy, None, base_id, "")
        # Held by whoever publishes a version or moves CURRENT (a checkpoint, a
        # rollback), in any process: one at a time, without blocking the log.
        self.lock = self.files.lock

    @staticmethod
    def _file(name: str, suffix: str) -> str:
        return f"{name}{suffix}"

    def names(self) -> list[str]:
        stems = (n.removesuffix(".json") for n in self.files.names(".json"))
        return sorted(stem for stem in stems if NAME.match(stem))

    def current_name(self) -> str:
        try:
            name = self.files.read("CURRENT").decode(errors="replace").strip()
        except FileNotFoundError:
            return BASE
        return name if name == BASE or NAME.match(name) else BASE

    def set_current(self, name: str) -> None:
        self.files.write("CURRENT", f"{name}\n".encode())

    def info(self, name: str) -> VersionInfo:
        if name == BASE:
            return self.base_info
        try:
            data = json.loads(self.files.read(self._file(name, ".json")))
            info = VersionInfo(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise CorruptVersion(f"{name}: unreadable manifest ({exc})") from exc
        if info.base_id != self.base_id:
            raise CorruptVersion(f"{name}: made from another base model ({info.base_id})")
        return info

    def load(self, name: str) -> tuple[VersionInfo, State]:
        info = self.info(name)
        if name == BASE:
            return info, self.base_state
        try:
            data = self.files.read(self._file(name, ".npz"))
        except OSError as exc:
            raise CorruptVersion(f"{name}: state file missing ({exc})") from exc
        if sha256_bytes(data) != info.sha256:
            raise CorruptVersion(f"{name}: state file does not match its sha256")
        try:
            state = self._decode(data)
        except ValueError as exc:
            raise CorruptVersion(f"{name}: state file unreadable or not for this model "
                                 f"({exc})") from exc
        return info, state

    def load_current(self) -> tuple[VersionInfo, State]:
        """The current version, or its nearest valid ancestor (ultimately the base)."""
        name: str | None = self.current_name()
        while name is not None and name != BASE:
            try:
                return self.load(name)
            except CorruptVersion as exc:
                log.warning("skipping model version %s", exc)
                name = self._parent_of(name)
        return self.load(BASE)

    def _parent_of(self, name: str) -> str | None:
        try:
            return json.loads(self.files.read(self._file(name, ".json"))).get("parent") or BASE
        except (OSError, ValueError):
            # No readable manifest: fall back to the newest older version.
            older = [n for n in self.names() if n < name]
            return older[-1] if older else BASE

    def chain(self, name: str | None = None, limit: int | None = None) -> list[str]:
        """``name`` (default: current) and its ancestors, newest first, ending with base.

        ``limit``: only the first ``limit`` of them.
        """
        out: list[str] = []
        node: str | None = name or self.current_name()
        while node is not None and len(out) != limit:
            out.append(node)
            if node == BASE:
                break
            node = self._parent_of(node)
        return out

    def write(self, state: State, parent: str, first_id: int | None, last_id: int,
              holdout_accuracy: float | None, reason: str = "checkpoint") -> VersionInfo:
        """Persist a new version (state first, manifest last) and make it current."""
        existing = self.names()
        number = int(existing[-1][1:]) + 1 if existing else 1
        name = f"v{number:06d}"
        data = state.to_bytes()
        self.files.write(self._file(name, ".npz"), data)
        info = VersionInfo(
            name=name, parent=parent, first_feedback_id=first_id, last_feedback_id=last_id,
            holdout_accuracy=holdout_accuracy, sha256=sha256_bytes(data), base_id=self.base_id,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), reason=reason,
        )
        self.files.write(self._file(name, ".json"),
                         (json.dumps(info.to_json(), indent=2) + "\n").encode())
        self.set_current(name)
        return info

    def has_state(self, name: str) -> bool:
        return name == BASE or self.files.exists(self._file(name, ".npz"))

    def restore(self, name: str, state: State) -> None:
        """Write back the state file of a pruned version, if ``state`` is exactly it."""
        info = self.info(name)
        data = state.to_bytes()
        if sha256_bytes(data) != info.sha256:
            raise CorruptVersion(f"{name}: its state pruned, and the log replayed up to "
                                 f"id {info.last_feedback_id} does not match its sha256")
        self.files.write(self._file(name, ".npz"), data)

    def prune(self, keep: int) -> list[str]:
        """Delete the state files of all but the current version and its newest ancestors.

        Each checkpoint writes the whole state (4 MB for 2**20 weights), so
        without this the folder would grow by that much every few hundred
        verdicts, forever. Kept: the ``keep`` newest versions of the current
        chain (at least the current one and its parent, which a process
        switching versions at this moment may still be loading). Manifests
        stay, as history; rolling back to a pruned version rebuilds its state
        from the log (:meth:`Learner.rollback`). State files without a manifest
        (left by a crash mid-checkpoint) go too. Returns the pruned names.

        Run under :attr:`lock`, as checkpoints are: no version is being
        written meanwhile. Its cost does not grow with the history: it walks
        ``keep`` manifests and lists the few state files left.
        """
        kept = set(self.chain(limit=max(keep, 2)))
        pruned = []
        for file in self.files.names(".npz"):
            stem = file.removesuffix(".npz")
            if NAME.match(stem) and stem not in kept:
                self.files.delete(file)
                pruned.append(stem)
        return sorted(pruned)

    def list(self) -> list[VersionInfo]:
        infos = [self.base_info]
        for name in self.names():
            try:
                infos.append(self.info(name))
            except CorruptVersion as exc:
                log.warning("skipping model version %s", exc)
        return infos
