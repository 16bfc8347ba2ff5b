"""The TOML config file: one pydantic model, validated once at start-up.

Found at ``--config PATH``, else ``$CLAUDE_MCP_BRIDGE_CONFIG``, else ``config.toml`` in
the platformdirs user config dir of ``claude-mcp-bridge``. No file means the
defaults below. An unknown key or a wrong type stops the server with the file, the
key and the reason. Every field is documented here and in the README.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .config_sections import CatalogConfig, ReloadConfig, WarmConfig
from .errors import ConfigError

PermissionMode = Literal[
    "acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "manual", "plan"
]
SAFE_MODES: tuple[PermissionMode, ...] = ("default", "manual", "plan", "dontAsk", "acceptEdits")
"""The modes a definition file may ask for when ``allowed_modes`` is not set (plus
bypassPermissions when ``allow_bypass_permissions``): ``auto`` lets a classifier approve
tool uses, so a file must not choose it on its own."""
CONFIG_VAR = "CLAUDE_MCP_BRIDGE_CONFIG"

Usd = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetConfig(_Section):
    per_call_usd: Usd | None = None
    """Cap of one call; passed to the CLI as --max-budget-usd."""
    daily_usd: Usd | None = None
    """Spend per UTC day (reserved at admission, settled to the real cost)."""
    monthly_usd: Usd | None = None
    """Spend per UTC calendar month."""


class LimitsConfig(_Section):
    max_concurrency: Annotated[int, Field(ge=1)] = 8
    """Children running at once; more calls wait in the queue. A ``claude`` child spends
    nearly all its time waiting for the model, not on a CPU, and holds 150-250 MB: 8 fit
    a laptop and let a client's usual fan-out of parallel agents run without queueing."""
    max_queue: Annotated[int, Field(ge=0)] = 16
    """Calls that may wait for a slot; beyond that a call is refused at once."""
    timeout_s: Annotated[float, Field(gt=0)] = 1800.0
    """Wall-clock limit of one call."""
    kill_grace_s: Annotated[float, Field(gt=0)] = 5.0
    """Time between SIGTERM and SIGKILL when a call is stopped."""
    max_depth: Annotated[int, Field(ge=1)] = 3
    """A bridge started this deep in a chain of bridges refuses calls (recursion guard)."""
    max_turns: Annotated[int, Field(ge=1)] | None = None
    """Upper bound of the turns of one call (the caller may ask for fewer)."""
    heartbeat_s: Annotated[float, Field(gt=0)] = 15.0
    """A progress notification at least this often while a call runs, even when silent."""
    progress_gap_s: Annotated[float, Field(ge=0, le=5)] = 0.1
    """Progress notifications to a client at most one per this long; of a burst, the last
    one goes out (0: every event is sent at once)."""
    stall_s: Annotated[float, Field(gt=0)] | None = 900.0
    """A child that prints nothing for this long is ended as stalled (unset: never)."""
    result_grace_s: Annotated[float, Field(gt=0)] = 5.0
    """Time a child may take to exit after its result before it is ended."""
    max_result_chars: Annotated[int, Field(ge=1000)] = 50_000
    """Longer answers are cut with a marker; the whole text stays readable as a resource."""


Decision = Literal["allow", "deny", "ask"]


class RuleConfig(_Section):
    """One permission rule: ``{tool = "Bash(git *)", decision = "allow"}``."""

    tool: Annotated[str, Field(min_length=1, pattern=r"^[^-(\s][^(]*(\(.*\))?$")]
    """``Name``, ``Name(glob)`` (Bash command or cwd-relative path), or ``mcp__calendar__*``."""
    decision: Decision
    """allow: answer yes; deny: answer no; ask: ask the person (see ``ask_timeout_s``)."""


class SandboxConfig(_Section):
    """The CLI's own sandbox around the commands a call runs (Linux: bubblewrap + socat)."""

    enabled: bool = False
    """Run every call's Bash commands sandboxed: writable only inside the call's cwd and
    ``writable_roots``; a call that cannot be sandboxed here is refused, never run bare."""
    writable_roots: list[Path] = []
    """More directories sandboxed commands may write to."""
    allowed_domains: list[str] = []
    """Hosts sandboxed commands may reach (none by default: no network)."""


class PermissionsConfig(_Section):
    mode: PermissionMode | None = None
    """--permission-mode for every call (default: the definition's, else the CLI's)."""
    allowed_tools: list[str] | None = None
    """When set, calls may use only these tools (narrows a definition's tools, never widens)."""
    disallowed_tools: list[str] = []
    """Tools no call may use, added to each definition's own."""
    allowed_cwd_roots: list[Path] | None = None
    """Directories a `cwd` argument must be inside (default: the project directory)."""
    allow_model_override: bool = True
    """Whether a caller may pass `model`."""
    allow_bypass_permissions: bool = False
    """bypassPermissions is refused unless this is true."""
    rules: list[RuleConfig] = []
    """What a call's permission prompts get, per tool pattern; the strictest match wins."""
    unmatched: Decision = "ask"
    """The decision for a tool use no rule matches and the definition does not declare."""
    ask_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    """How long a question waits for the person; then the tool use is denied."""
    no_elicitation: Literal["deny", "allow"] = "deny"
    """What "ask" becomes for a client that cannot ask its user (no elicitation)."""
    sandbox: SandboxConfig = SandboxConfig()
    allowed_modes: list[PermissionMode] | None = None
    """Permission modes a definition file may ask for (``permissionMode``); a call whose
    file asks for another is refused. Default: SAFE_MODES, and bypassPermissions when
    allow_bypass_permissions. The config's own ``mode`` must be one of these when set."""

    def modes_for_definitions(self) -> tuple[PermissionMode, ...]:
        if self.allowed_modes is not None:
            return tuple(self.allowed_modes)
        bypass: tuple[PermissionMode, ...] = (
            ("bypassPermissions",) if self.allow_bypass_permissions else ())
        return (*SAFE_MODES, *bypass)


class McpSection(_Section):
    configs: list[Path] = []
    """MCP config files forwarded to every call, after those given with --mcp-config."""
    strict: bool = False
    """Children see only the forwarded MCP servers (--strict-mcp-config)."""
    allowed_servers: list[str] | None = None
    """When set, the only MCP servers a child may use, whatever their source: the forwarded
    configs (explicit files, the project's .mcp.json chain) are cut down to these and the
    child runs with --strict-mcp-config, so nothing else loads; an agent file naming
    another server is refused. Unset: any forwarded server."""
    definition_servers: list[str] = []
    """Servers an agent file may start itself (an inline config in its ``mcpServers``), by
    name. Default: none, so an agent file cannot start a program of its choosing; it may
    still name servers configured elsewhere (``mcpServers: [github]``)."""


class LedgerConfig(_Section):
    path: Path | None = None
    """The SQLite file (default: ledger.sqlite3 in the user data dir)."""
    url: Annotated[str, Field(pattern=r"^postgres(ql)?://")] | None = None
    """A PostgreSQL database shared by bridges on several hosts (``postgresql://...``;
    needs the ``postgres`` extra). Budgets, call rows, jobs and kept answers live there."""
    lease_s: Annotated[float, Field(ge=1)] = 15.0
    """With ``url``: a bridge's lease (renewed every third); expired, any bridge recovers."""
    store_prompts: bool = False
    """Store prompts in full; by default only their length and SHA-256."""

    @model_validator(mode="after")
    def _one_place(self) -> LedgerConfig:
        if self.path is not None and self.url is not None:
            raise PydanticCustomError(
                "ledger_place", "set either path (a SQLite file) or url (PostgreSQL), not both")
        return self


class DiscoveryConfig(_Section):
    extra_roots: list[Path] = []
    """Folders laid out like ~/.claude (agents/, skills/), after --extra-root ones."""


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    """Address for --transport http|sse; anything but loopback needs a token."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    """TCP port (0: any free port, logged at start-up)."""
    token: str | None = None
    """Bearer token clients must send (also $CLAUDE_MCP_BRIDGE_TOKEN, which wins)."""
    allowed_hosts: list[str] = []
    """Extra Host header values accepted (loopback names always are); `name:*` = any port."""
    allowed_origins: list[str] = []
    """Extra Origin header values accepted (loopback origins always are)."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    """Largest request body; bigger ones get 413."""
    max_sessions: Annotated[int, Field(ge=1)] = 100
    """Open MCP sessions (Streamable HTTP and SSE each); beyond that new ones get 503."""
    session_idle_timeout_s: Annotated[float, Field(gt=0)] = 1800.0
    """A Streamable HTTP session with no request for this long is closed."""
    unused_session_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    """A session that sent no request after ``initialize`` is closed after this long."""
    max_connections: Annotated[int, Field(ge=1)] = 1000
    """Open TCP connections (kept below the descriptor limit); at the cap, the idlest goes."""
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Time a connection gets to send a whole request head; then 408 and closed."""
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Time a request gets to send its whole body after its head; then 408 and closed."""
    max_json_depth: Annotated[int, Field(ge=4, le=512)] = 64
    """Deepest nesting of arrays and objects in a JSON-RPC body; deeper gets a parse error."""
    drain_timeout_s: Annotated[float, Field(ge=0)] = 30.0
    """On SIGTERM/SIGINT, how long calls in flight may finish before they are stopped."""
    stateless: bool = False
    """Streamable HTTP without sessions: any replica behind a load balancer can answer."""


class ToolLimits(_Section):
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    max_turns: Annotated[int, Field(ge=1)] | None = None
    live_idle_s: Annotated[float, Field(ge=0)] | None = None
    """This tool's ``[warm] live_idle_s`` (0: its sessions are never kept alive)."""


class ToolPermissions(_Section):
    mode: PermissionMode | None = None
    allowed_modes: list[PermissionMode] | None = None
    """Narrows [permissions] allowed_modes for this definition."""
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] = []
    allowed_cwd_roots: list[Path] | None = None
    allow_model_override: bool | None = None
    rules: list[RuleConfig] = []
    """This definition's rules; they only narrow the global ones."""
    sandbox: bool | None = None
    """true: sandbox this definition's calls even when [permissions.sandbox] is off."""


class ToolMcp(_Section):
    allowed_servers: list[str] | None = None
    """Narrows [mcp] allowed_servers for this definition."""
    definition_servers: list[str] | None = None
    """Narrows [mcp] definition_servers for this definition."""


class ToolConfig(_Section):
    """``[agents.<name>]`` or ``[skills.<name>]``: overrides for one definition."""

    enabled: bool = True
    """A disabled tool is not published at all."""
    tags: list[str] = []
    budget: BudgetConfig = BudgetConfig()
    """This tool's own caps, on top of the global ones."""
    limits: ToolLimits = ToolLimits()
    permissions: ToolPermissions = ToolPermissions()
    mcp: ToolMcp = ToolMcp()
    """This tool's own MCP server lists; they narrow the global ones, never widen them."""


ClientName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ClientPermissions(_Section):
    mode: PermissionMode | None = None
    """The most permissive mode this client's calls run in (a stricter one is kept)."""
    allowed_tools: list[str] | None = None
    """Narrows the tools its calls may use, on top of the global and per-tool lists."""
    disallowed_tools: list[str] = []
    """Denied for this client's calls, added to every other list."""
    allow_model_override: bool = True
    """Whether this client may pass `model` (only where the config allows it at all)."""


class ClientConfig(_Section):
    """``[clients.<name>]``: one HTTP client, known by its token, under its own ceiling."""

    token_sha256: Sha256Hex | None = None
    """Hex SHA-256 of the client's bearer token (``token add`` writes it); unset: revoked."""
    tools: list[str] | None = None
    """Tools it may call, by tool or definition name; unset: all published tools."""
    budget: BudgetConfig = BudgetConfig()
    """Its own per-call, daily and monthly caps, on top of the tool's and global ones."""
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    """Its calls running at once (within ``[limits] max_concurrency``)."""
    permissions: ClientPermissions = ClientPermissions()


class Config(_Section):
    budget: BudgetConfig = BudgetConfig()
    limits: LimitsConfig = LimitsConfig()
    permissions: PermissionsConfig = PermissionsConfig()
    mcp: McpSection = McpSection()
    ledger: LedgerConfig = LedgerConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    http: HttpConfig = HttpConfig()
    reload: ReloadConfig = ReloadConfig()
    catalog: CatalogConfig = CatalogConfig()
    warm: WarmConfig = WarmConfig()
    agents: dict[str, ToolConfig] = {}
    skills: dict[str, ToolConfig] = {}
    clients: dict[ClientName, ClientConfig] = {}

    @model_validator(mode="after")
    def _configured_modes_are_allowed(self) -> Config:
        for key, mode, lists in self._modes_and_lists():
            refused = next((k for k, allowed in lists if mode not in allowed), None)
            if mode is not None and refused is not None:
                raise PydanticCustomError(
                    "mode_not_allowed",
                    "permission mode {mode} is not in {refused}",
                    {"key": key, "mode": mode, "refused": refused})
        return self

    def _modes_and_lists(self) -> Iterator[tuple[str, PermissionMode | None,
                                                 list[tuple[str, list[PermissionMode]]]]]:
        root = ([("permissions.allowed_modes", self.permissions.allowed_modes)]
                if self.permissions.allowed_modes is not None else [])
        yield "permissions.mode", self.permissions.mode, root
        for table, tools in (("agents", self.agents), ("skills", self.skills)):
            for name, tool in tools.items():
                own = tool.permissions.allowed_modes
                lists = root + ([(f"{table}.{name}.permissions.allowed_modes", own)]
                                if own is not None else [])
                yield f"{table}.{name}.permissions.mode", tool.permissions.mode, lists

    @model_validator(mode="after")
    def _bypass_needs_consent(self) -> Config:
        if self.permissions.allow_bypass_permissions:
            return self
        for key, mode in self._modes():
            if mode == "bypassPermissions":
                # The error's context carries the key: a model validator has no location.
                raise PydanticCustomError(
                    "bypass_needs_consent",
                    "permission mode bypassPermissions needs "
                    "[permissions] allow_bypass_permissions = true",
                    {"key": key})
        return self

    def _modes(self) -> Iterator[tuple[str, PermissionMode | None]]:
        yield "permissions.mode", self.permissions.mode
        for table, tools in (("agents", self.agents), ("skills", self.skills)):
            for name, tool in tools.items():
                yield f"{table}.{name}.permissions.mode", tool.permissions.mode
        for name, client in self.clients.items():
            yield f"clients.{name}.permissions.mode", client.permissions.mode

    def tool(self, kind: Literal["agent", "skill"], name: str) -> ToolConfig:
        table = self.agents if kind == "agent" else self.skills
        return table.get(name, _NO_OVERRIDES)


_NO_OVERRIDES = ToolConfig()


def config_path(flag: str | None, environ: Mapping[str, str], default: Path) -> Path | None:
    """The config file to read: the flag, the env var, else ``default`` if it exists."""
    if flag:
        return Path(flag).expanduser()
    if environ.get(CONFIG_VAR):
        return Path(environ[CONFIG_VAR]).expanduser()
    return default if default.is_file() else None


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        what = "config file not found" if isinstance(exc, FileNotFoundError) else (
            f"cannot read the config file: {exc}")
        raise ConfigError(what, path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(part) for part in first["loc"]) or first.get("ctx", {}).get("key")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(first["msg"] + more, path=path, key=key) from None
