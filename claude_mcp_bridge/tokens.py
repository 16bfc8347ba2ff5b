"""``token add NAME`` and ``token revoke NAME``: a client's token, kept in the config file
only as its hash.

The file is edited as text, so its comments and layout stay: the ``token_sha256`` line of
the ``[clients.NAME]`` table is replaced (revoking leaves a comment in its place), or the
table is appended. The edited text must load and say what was meant before it replaces
the file (atomically, keeping its mode); a file this cannot edit (the client written as an
inline table or with dotted keys) is left alone and the caller prints the TOML to paste.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from .clients import new_token, token_hash
from .config import Config
from .errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOKEN_LINE = re.compile(r"^\s*token_sha256\s*=")


def toml_table(name: str, digest: str) -> str:
    """The table to paste for a client with this token hash."""
    return f'[clients.{name}]\ntoken_sha256 = "{digest}"\n'


def with_token_hash(text: str, name: str, digest: str | None) -> str:
    """``text`` with ``[clients.NAME] token_sha256`` set to ``digest`` (None: revoked)."""
    lines = text.splitlines(keepends=True)
    header = _table(lines, name)
    if header is None:
        if digest is None:
            return text
        return text + ("\n" if text and not text.endswith("\n") else "") + (
            "\n" if text else "") + toml_table(name, digest)
    end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    line = (f'token_sha256 = "{digest}"\n' if digest is not None
            else f"# token_sha256 revoked {when}\n")
    for i in range(header + 1, end):
        if _TOKEN_LINE.match(lines[i]):
            lines[i] = line
            return "".join(lines)
    if digest is not None:
        lines.insert(header + 1, line)
    return "".join(lines)


def _table(lines: list[str], name: str) -> int | None:
    header = re.compile(r'^\s*\[\s*clients\s*\.\s*("?)' + re.escape(name)
                        + r'\1\s*\]\s*(#.*)?$')
    return next((i for i, line in enumerate(lines) if header.match(line)), None)


def token_hash_in(text: str, name: str) -> str | None:
    """The token hash ``text`` gives client ``name``, checking the whole file loads."""
    try:
        config = Config.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"the edited config would not load: {exc}") from None
    client = config.clients.get(name)
    return None if client is None else client.token_sha256


def set_token_hash(path: Path, name: str, digest: str | None) -> None:
    """Write ``digest`` (None: revoke) as client ``name``'s token hash into ``path``;
    raises ConfigError, leaving the file as it was, when the edit cannot be made."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    edited = with_token_hash(text, name, digest)
    if token_hash_in(edited, name) != digest:
        raise ConfigError(f"cannot edit the token of client {name} in this file (is it "
                          "written as an inline table or with dotted keys?)", path=path)
    _replace(path, edited)


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def token_command(action: str, name: str, path: Path, *, print_toml: bool,
                  out: TextIO, err: TextIO) -> int:
    """``token add|revoke NAME``: the exit status; the new token goes to ``out`` only."""
    if not NAME.match(name):
        print(f"claude-mcp-bridge: client names use only letters, digits, '_' and '-' "
              f"(1-64 characters), got {name!r}", file=err)
        return 2
    if action == "revoke":
        return _revoke(name, path, err)
    token = new_token()
    digest = token_hash(token)
    print(token, file=out, flush=True)
    if print_toml:
        print(f"# the token above is shown once; paste this into {path}:\n"
              + toml_table(name, digest), file=err)
        return 0
    try:
        set_token_hash(path, name, digest)
    except ConfigError as exc:
        print(f"claude-mcp-bridge: {exc}\npaste this into the file yourself:\n"
              + toml_table(name, digest), file=err)
        return 1
    print(f"wrote the hash of client {name}'s new token to {path}; the token above is shown "
          "once, store it now (a serving bridge accepts it after its next config reload)",
          file=err)
    return 0


def _revoke(name: str, path: Path, err: TextIO) -> int:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if token_hash_in(text, name) is None:
        print(f"claude-mcp-bridge: client {name} has no token in {path}", file=err)
        return 2
    set_token_hash(path, name, None)
    print(f"revoked the token of client {name} in {path}; a serving bridge refuses it after "
          "its next config reload (within [reload] poll_s + debounce_s)", file=err)
    return 0
