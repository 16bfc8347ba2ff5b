"""Clients: HTTP callers known by their own token, each under its own ceiling.

A ``[clients.<name>]`` entry holds the SHA-256 of the client's bearer token, never the
token. Tokens are 256 random bits (``secrets.token_urlsafe(32)``), so nobody can guess
one from its hash whatever the hash costs: a salted slow hash (scrypt, pbkdf2) would add
tens of milliseconds to every request and nothing to the safety. Hashes are compared with
``hmac.compare_digest``, against every client, so the time a check takes says nothing
about which client nearly matched.

A client's ceiling narrows what the config allows everyone; it never widens it:

- ``tools``: the only published tools it may call (by tool or definition name);
- ``budget``: its own per-call cap and daily and monthly budgets, summed by the ledger
  over the calls whose ``client`` is this client (just another budget key);
- ``permissions``: a ceiling on the permission mode, one more allow-list, more denied
  tools, and whether it may choose the model;
- ``max_concurrency``: its share of the bridge's slots.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from .budget import Budget
from .config import ClientConfig, Config
from .outcomes import Refusal
from .tool_policy import ToolPolicy, smallest, stricter, unique

CLIENT_SCOPE_KEY = "claude_mcp_bridge.client"
"""Where the HTTP transport puts the authenticated client's name in the ASGI scope."""


def new_token() -> str:
    """A fresh bearer token: 32 random bytes, URL-safe text."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the config keeps of a token: its hex SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ClientPolicy:
    """One client's ceiling, as it applies to every call it makes."""

    name: str
    budget: Budget
    tools: frozenset[str] | None
    """Tool or definition names it may call; None: all published tools."""
    max_concurrency: int | None
    mode_ceiling: str | None
    allowed_tools: tuple[str, ...] | None
    disallowed_tools: tuple[str, ...]
    allow_model_override: bool

    @classmethod
    def of(cls, name: str, config: ClientConfig) -> ClientPolicy:
        permissions = config.permissions
        return cls(
            name=name,
            budget=Budget(config.budget.per_call_usd, config.budget.daily_usd,
                          config.budget.monthly_usd),
            tools=None if config.tools is None else frozenset(config.tools),
            max_concurrency=config.max_concurrency,
            mode_ceiling=permissions.mode,
            allowed_tools=None if permissions.allowed_tools is None else tuple(
                permissions.allowed_tools),
            disallowed_tools=tuple(permissions.disallowed_tools),
            allow_model_override=permissions.allow_model_override)

    def may_call(self, tool: str, definition_name: str) -> bool:
        return self.tools is None or tool in self.tools or definition_name in self.tools

    def refusal(self, tool: str, definition_name: str, *, model: str | None) -> Refusal | None:
        """Why this client may not make this call at all, or None."""
        if not self.may_call(tool, definition_name):
            return Refusal("policy", f"client {self.name} may not call {tool}; add it to "
                           f"[clients.{self.name}] tools if it should")
        if model and not self.allow_model_override:
            return Refusal("policy", f"client {self.name} may not choose the model "
                           f"([clients.{self.name}.permissions] allow_model_override = false)")
        return None

    def narrow(self, policy: ToolPolicy) -> ToolPolicy:
        """A tool's policy held to this client's ceiling."""
        allow_lists = policy.allowed_tools
        if self.allowed_tools is not None:
            allow_lists = (*allow_lists, self.allowed_tools)
        ceiling = self.mode_ceiling if policy.mode_ceiling is None else stricter(
            policy.mode_ceiling, self.mode_ceiling)
        return replace(
            policy,
            per_call_usd=smallest(policy.per_call_usd, self.budget.per_call_usd),
            allowed_tools=allow_lists,
            disallowed_tools=unique([*policy.disallowed_tools, *self.disallowed_tools]),
            allow_model_override=policy.allow_model_override and self.allow_model_override,
            mode_ceiling=ceiling)


@dataclass(frozen=True)
class Clients:
    """The clients of one config: whose a token is, and each one's policy. Replaced as a
    whole when the config file changes (a revoked token then stops working)."""

    policies: Mapping[str, ClientPolicy]
    _hashes: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_config(cls, config: Config) -> Clients:
        policies = {name: ClientPolicy.of(name, c) for name, c in config.clients.items()}
        hashes = tuple((name, bytes.fromhex(c.token_sha256))
                       for name, c in config.clients.items() if c.token_sha256 is not None)
        return cls(MappingProxyType(policies), hashes)

    @property
    def any_token(self) -> bool:
        """Whether any client has a token (then every HTTP request needs one)."""
        return bool(self._hashes)

    def identify(self, token: str) -> str | None:
        """The client whose token this is, or None; in time independent of the match."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for name, expected in self._hashes:
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    def get(self, name: str) -> ClientPolicy | None:
        return self.policies.get(name)


NO_CLIENTS = Clients(MappingProxyType({}), ())
