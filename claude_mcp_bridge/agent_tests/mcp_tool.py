"""The ``test_agent`` MCP tool: the test runner for an agent that edits another agent.

It reads the definitions afresh for every call (the file was probably just edited), runs
the named definition's test cases like ``claude-mcp-bridge test NAME --compare`` and
answers with the text report and, as structuredContent, the JSON report. Failing tests
are a normal answer (``passed: false``); only a call that cannot run is an error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal, Protocol

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.json_schema import SkipJsonSchema

from agents_registry import load_registry

from ..catalog import Catalog, build_catalog
from ..outcomes import Reply
from ..settings import Settings
from .cases import SUFFIXES, TESTS_DIR, CaseFile, cwd_roots, select_case_files
from .compare import compare_each
from .execute import Host
from .report import json_report, text_report
from .runner import RunOptions, run_suite

TOOL_NAME = "test_agent"


class Progress(Protocol):
    async def say(self, message: str) -> None: ...


class TestAgentArguments(BaseModel):
    """The arguments of ``test_agent``; its JSON schema is the tool's inputSchema."""

    __test__ = False  # not a pytest test class
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Annotated[str, Field(
        min_length=1, max_length=200,
        description=f"The agent or skill to test: its cases are in {TESTS_DIR}/<name>.yaml "
                    "beside the definitions.")]
    kind: Annotated[
        Literal["agent", "skill"] | SkipJsonSchema[None],
        Field(description="Test the skill of that name rather than the agent."),
    ] = None
    cases: Annotated[
        list[str] | SkipJsonSchema[None],
        Field(description="Run only these cases (default: all)."),
    ] = None
    repeat: Annotated[int, Field(ge=1, le=10, description="Runs of each case.")] = 1
    compare: Annotated[bool, Field(
        description="Compare with the last test run of an earlier version of the definition "
                    "and flag what got worse.")] = True

    @field_validator("name")
    @classmethod
    def _a_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value.endswith(SUFFIXES):
            raise ValueError("must be an agent or skill name, not a path")
        return value


async def call_tool(
    bridge: Host, arguments: Mapping[str, Any] | None, progress: Progress
) -> Reply:
    try:
        parsed = TestAgentArguments.model_validate(dict(arguments or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        return Reply.refused(TOOL_NAME, f"invalid arguments: {problems}")
    settings = bridge.settings
    files, catalog = await anyio.to_thread.run_sync(_load, settings, parsed)
    if isinstance(files, str):
        return Reply.refused(TOOL_NAME, files)
    options = RunOptions(repeat=parsed.repeat,
                         cases=frozenset(parsed.cases) if parsed.cases else None,
                         caller="test/mcp")
    heartbeat = _Heartbeat(progress)
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat.beat, settings.config.limits.heartbeat_s)
        suite = await run_suite(bridge, catalog, files, options, heartbeat.say)
        tg.cancel_scope.cancel()
    if not suite.definitions:
        return Reply.refused(TOOL_NAME, "; ".join(str(d) for d in suite.diagnostics))
    comparisons = []
    if parsed.compare:
        comparisons = await anyio.to_thread.run_sync(
            compare_each, bridge.ledger, [d.records for d in suite.definitions])
    return Reply(text_report(suite, comparisons), json_report(suite, comparisons))


class _Heartbeat:
    """Passes progress on, and says something at least every ``every_s`` while tests run:
    MCP clients reset their request timeouts on progress, and a test run is long."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._began = self._last = time.monotonic()
        self._latest = "starting"

    async def say(self, message: str) -> None:
        self._last, self._latest = time.monotonic(), message
        await self._progress.say(message)

    async def beat(self, every_s: float) -> None:
        while True:
            await anyio.sleep(max(0.0, every_s - (time.monotonic() - self._last)))
            if time.monotonic() - self._last < every_s:
                continue  # something was said meanwhile
            self._last = time.monotonic()
            await self._progress.say(f"still testing ({self._last - self._began:.0f}s); "
                                     f"last: {self._latest}")


def _load(settings: Settings, arguments: TestAgentArguments) -> tuple[
        list[CaseFile] | str, Catalog]:
    """The test files for the call and a catalog read from disk now."""
    catalog = build_catalog(load_registry(settings.roots), settings.config,
                            settings.project_dir)
    selection = select_case_files([arguments.name], settings.roots, cwd_roots(settings))
    files = [replace(f, kind=f.kind or arguments.kind) for f in selection.files
             if arguments.kind is None or f.kind in (None, arguments.kind)]
    if not files:
        reasons = "; ".join(str(d) for d in selection.diagnostics)
        return reasons or f"no test file for {arguments.name!r}", catalog
    if arguments.cases:
        known = {case.name for f in files for case in f.cases}
        unknown = [name for name in arguments.cases if name not in known]
        if unknown:
            return (f"no case named {', '.join(map(repr, unknown))} in the tests of "
                    f"{arguments.name!r}; its cases: {', '.join(sorted(known))}"), catalog
    return files, catalog
