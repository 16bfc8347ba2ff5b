"""Parsed definitions kept between loads, by file identity (issue 18: start-up).

Reading, YAML and validation are most of discovery's time (2,500 files: about 150 ms of
200). A file whose identity (device, inode, size, and modification and change times in
nanoseconds) is what it was at the last load is not read again: its definition and
warnings come from the cache. Each load prunes the files no longer found.

What is trusted, and why it is safe:

- only definitions are kept; a file that failed is read again on every load;
- a file changed less than ``SETTLE_S`` before it was read is not kept: two writes within
  one tick of the file system's clock, of the same size, would look alike (git's index
  knows the problem as "racy" entries);
- the cache is keyed by the source of this package and the Python version, so another
  parser never reads it; a file that does not load (damaged, another format) is ignored
  and rebuilt;
- it is written atomically (a new file renamed over the old), readable by its owner only,
  in the bridge's own data folder: it is a pickle, trusted as that folder is.
"""

from __future__ import annotations

import copyreg
import hashlib
import logging
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .definitions import Definition

logger = logging.getLogger("agents_registry")

SETTLE_S = 2.0
Identity = tuple[int, int, int, int, int]
Entry = tuple[Identity, Definition, tuple[Any, ...]]
"""A file's identity when read, its definition, and its warnings (``Diagnostic``)."""


def _source_key() -> str:
    """This package's source, and the versions of Python and of the parsers it uses."""
    import pydantic
    import pydantic_core
    import yaml

    digest = hashlib.sha256(sys.version.encode())
    for version in (pydantic.VERSION, pydantic_core.__version__, yaml.__version__):
        digest.update(version.encode())
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()


def _private(path: Path, fd: int) -> None:
    """Raise unless the open file is its owner's alone: a pickle runs code when loaded,
    so a file someone else could have written is never read (the data folder can be set
    anywhere with ``CLAUDE_MCP_BRIDGE_DATA_DIR``)."""
    if sys.platform == "win32":
        return
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} is not private to this user; not read")


def file_identity(path: str) -> Identity | None:
    """Device, inode, size, and modification and change times (ns) of the file at
    ``path``, links followed; None when it cannot be seen."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


class ParseCache:
    """The entries of one load, read from and saved to ``path``."""

    def __init__(self, path: Path, key: str, entries: dict[tuple[str, str, str], Entry]) -> None:
        self.path, self._key = path, key
        self._old = entries
        self._new: dict[tuple[str, str, str], Entry] = {}
        self._changed = False

    @classmethod
    def load(cls, path: Path, paths: Iterable[Path] = ()) -> ParseCache:
        """The cache saved at ``path``; ``paths``, the files about to be looked up, are the
        path objects its entries get (see ``_Unpickler``)."""
        key = _source_key()
        try:
            with path.open("rb") as file:
                _private(path, file.fileno())
                # the bridge's own private file (see above)
                saved = _Unpickler(file, {str(p): p for p in paths}).load()
            if not (isinstance(saved, dict) and saved.get("key") == key):
                raise ValueError("written by another version")
            entries = saved["entries"]
        except FileNotFoundError:
            entries = {}
        except Exception as exc:  # damaged or foreign: start afresh
            logger.info("definition cache %s not used (%s); rebuilding it", path, exc)
            entries = {}
        return cls(path, key, entries)

    def get(self, where: tuple[str, str, str]) -> tuple[Identity | None, Entry | None]:
        """The file's identity now (None when it cannot be seen), and its entry when that
        identity is the one it was read with."""
        identity = file_identity(where[0])
        if identity is None:
            return None, None
        entry = self._old.get(where)
        if entry is not None and entry[0] == identity:
            self._new[where] = entry
            return identity, entry
        return identity, None

    def put(self, where: tuple[str, str, str], identity: Identity | None, definition: Definition,
            warnings: tuple[Any, ...]) -> None:
        """Keep a definition read from a file that had ``identity`` before it was read."""
        settled = time.time_ns() - int(SETTLE_S * 1e9)
        if identity is None or max(identity[3], identity[4]) > settled:
            return
        self._new[where] = (identity, definition, warnings)
        self._changed = True

    def save(self) -> None:
        """Write the entries of this load, when they differ from those read."""
        if not self._changed and self._new.keys() == self._old.keys():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".definitions-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as file:
                    _Pickler(file).dump({"key": self._key, "entries": self._new})
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except Exception as exc:  # a full disk, say: it costs speed, nothing else
            logger.warning("definition cache %s not written: %s", self.path, exc)


def _path_of(text: str) -> Path:
    return Path(text)


def _reduce_path(path: Path) -> tuple[Any, tuple[str]]:
    return _path_of, (str(path),)


class _Pickler(pickle.Pickler):
    """Saves each path as its text: unpickled the default way, the 3,000 paths of 2,500
    definitions were rebuilt part by part (``pathlib``'s parsing), 25-30 ms of the 45 ms a
    load took."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.dispatch_table = {**copyreg.dispatch_table, type(Path()): _reduce_path}


class _Unpickler(pickle.Unpickler):
    """Gives each saved path the path object of the file being looked up (the same
    text), and builds one only for a path not among them."""

    def __init__(self, file: Any, paths: dict[str, Path]) -> None:
        super().__init__(file)
        self._paths = paths

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, _path_of.__name__):
            return self._path_of
        return super().find_class(module, name)

    def _path_of(self, text: str) -> Path:
        return self._paths.get(text) or Path(text)
