"""Sections of the config file (``config.py``) that stand on their own: catalog, reload,
warm processes and live sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """As ``config._Section``: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WarmConfig(Section):
    size: Annotated[int, Field(ge=0, le=16)] = 0
    """CLI processes kept started ahead of time per command line (0: off)."""
    idle_s: Annotated[float, Field(gt=0)] = 300.0
    """A warm process unused this long is ended."""
    live_sessions: Annotated[int, Field(ge=0, le=64)] = 2
    """Processes kept alive after a call for a follow-up with its session_id (0: off)."""
    live_idle_s: Annotated[float, Field(gt=0)] = 300.0
    """A live session unused this long is ended (a later follow-up resumes)."""
    live_memory_mb: Annotated[int, Field(ge=1)] = 1024
    """Memory the live sessions may hold together; the least recently used end first."""


class CatalogConfig(Section):
    mode: Literal["tools", "router", "both"] = "tools"
    """tools: one tool per agent and skill; router: find_agent + run_agent; both."""
    jobs: bool | None = None
    """Publish the job_* tools (start and poll); unset: yes, except in router mode."""
    test_tool: bool | None = None
    """Publish test_agent (run an agent's test cases); unset: as ``jobs``."""

    @property
    def publish_jobs(self) -> bool:
        return self.jobs if self.jobs is not None else self.mode != "router"

    @property
    def publish_test_tool(self) -> bool:
        return self.test_tool if self.test_tool is not None else self.mode != "router"


class ReloadConfig(Section):
    enabled: bool = True
    """Rebuild the catalog when definition files change and tell clients (list_changed)."""
    poll_s: Annotated[float, Field(gt=0)] = 1.0
    """How often the definition folders are checked."""
    debounce_s: Annotated[float, Field(ge=0)] = 0.3
    """Quiet time after a change before the catalog is rebuilt."""
