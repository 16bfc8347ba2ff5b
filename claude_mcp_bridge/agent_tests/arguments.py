"""The arguments of the ``test_agent`` tool, apart from its runner: the server publishes the
tool's schema and loads the runner (``mcp_tool.py``) on the first call."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from . import SUFFIXES, TESTS_DIR, TOOL_NAME

__all__ = ["TOOL_NAME", "TestAgentArguments"]


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


