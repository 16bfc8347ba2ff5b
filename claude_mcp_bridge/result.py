"""RunResult -> CallReport -> Reply: what the caller (and later the ledger) sees.

A run failed when the exit code is non-zero, or the ``result`` event says
``is_error`` (its ``subtype`` can be ``success`` even then), or no ``result``
event came at all. Every failure becomes a tool result with ``isError`` and a
message a person can act on; none becomes a protocol error.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .arguments import USAGE_META, CallOutput
from .outcomes import Outcome, Reply
from .runner import Limits, RunResult
from .settings import client_env_hint

_SUBTYPE_HINTS = {
    "error_max_turns": "the agent reached its turn limit; raise max_turns or narrow the task",
    "error_max_budget_usd": "the agent reached its budget; raise max_budget_usd or narrow the task",
    "error_during_execution": "the run was interrupted",
}
NOT_LOGGED_IN = "Not logged in"
"""How the CLI's result starts when it found neither a login nor ``ANTHROPIC_API_KEY``."""
_LOGIN_HINT = ("run `claude` and `/login` as the user the MCP client runs as, or give the "
               "server a key. " + client_env_hint("ANTHROPIC_API_KEY", "sk-ant-..."))


@dataclass(frozen=True)
class CallReport:
    """A finished call: its outcome and the answer or error message."""

    outcome: Outcome
    message: str
    output: CallOutput
    usage: Mapping[str, Any] = field(default_factory=dict)
    """Token counts as the CLI reported them (for the ledger and the result's ``_meta``)."""


def report(tool: str, run: RunResult, limits: Limits) -> CallReport:
    failure = _failure(run, limits)
    outcome: Outcome = "ok" if failure is None else ("timeout" if run.timed_out else "error")
    message = run.result.text if failure is None and run.result else f"{tool}: {failure}"
    usage = run.result.usage if run.result else {}
    return CallReport(outcome, message, _output(run, message, failure is not None), usage)


def _failure(run: RunResult, limits: Limits) -> str | None:
    if run.start_error:
        return run.start_error
    if run.timed_out:
        return f"timed out after {limits.timeout_s:g}s; the agent was stopped"
    if run.stalled:
        return (f"stalled: the agent printed nothing for {limits.stall_s:g}s and was stopped "
                "(raise [limits] stall_s if its steps are that slow)")
    if run.protocol_error:
        return run.protocol_error + _stderr(run)
    result = run.result
    if result is None:
        return f"the CLI ended ({_exit(run.exit_code)}) without a result{_stray(run)}{_stderr(run)}"
    if result.is_error:
        hint = _SUBTYPE_HINTS.get(result.subtype)
        detail = result.text or result.subtype
        if detail.startswith(NOT_LOGGED_IN):
            hint = _LOGIN_HINT
        return detail + (f" ({hint})" if hint else "")
    if run.exit_code not in (0, None) and not run.killed:
        return f"the CLI exited with {_exit(run.exit_code)} after its result{_stderr(run)}"
    return None


def _output(run: RunResult, message: str, is_error: bool) -> CallOutput:
    result = run.result
    return CallOutput(
        result=message,
        is_error=is_error,
        session_id=result.session_id if result else None,
        cost_usd=result.total_cost_usd if result else None,
        num_turns=result.num_turns if result else None,
        duration_ms=result.duration_ms if result else int(run.duration_s * 1000),
        permission_denials=[d for d in result.permission_denials if isinstance(d, dict)]
        if result else [],
    )


def _exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _stderr(run: RunResult) -> str:
    if not run.stderr_tail:
        return ""
    tail = run.stderr_tail[-1500:]
    return f"; stderr: {tail}"


def _stray(run: RunResult) -> str:
    if not run.stray_lines:
        return ""
    return "; unparsable output: " + " | ".join(line[:200] for line in run.stray_lines[-3:])


def bounded(call: CallReport, max_chars: int, full_text_at: str | None,
            not_kept: str = "") -> CallReport:
    """``call`` with its answer cut to ``max_chars`` and a marker saying where the whole
    text is kept (or, with ``full_text_at`` None, why it could not be kept); unchanged
    when it fits."""
    text = call.message
    if len(text) <= max_chars:
        return call
    where = (f"the full answer is at {full_text_at}" if full_text_at is not None
             else f"the full answer could not be stored ({not_kept})")
    marker = (f"\n\n[... truncated by claude-mcp-bridge: {max_chars:,} of {len(text):,} "
              f"characters shown; {where}]")
    cut = text[: max(0, max_chars - len(marker))] + marker
    output = call.output.model_copy(update={"result": cut, "full_result": full_text_at})
    return replace(call, message=cut, output=output)


def reply(call: CallReport) -> Reply:
    """The caller's view of a finished call: the answer, the facts it acts on as structured
    data (``full_result`` only when the answer was cut), the token counts as metadata."""
    structured = call.output.model_dump(mode="json", exclude_defaults=True)
    return Reply(call.message, structured, call.outcome != "ok",
                 meta={USAGE_META: dict(call.usage)} if call.usage else None)
