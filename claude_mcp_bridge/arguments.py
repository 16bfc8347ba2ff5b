"""The arguments every tool takes and the structured result it returns.

pydantic models are the one source of truth: their JSON schemas are what
``tools/list`` publishes as ``inputSchema`` and ``outputSchema``, and the same
models validate what callers send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.json_schema import SkipJsonSchema

_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_MODEL = r"^[A-Za-z0-9][A-Za-z0-9._:@\[\]/-]{0,127}$"


class CallArguments(BaseModel):
    """The arguments of every agent and skill tool; its JSON schema is the inputSchema.

    Constraints sit on the value's own type, not on ``X | None``: pydantic cannot apply a
    ``pattern`` or a bound to the union and raised TypeError for an explicit null (found by
    the fuzz suite); a null optional argument means "not given".
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    prompt: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1_000_000,
            description="The task for the agent, written as you would brief a colleague.",
        ),
    ]
    cwd: Annotated[
        str | SkipJsonSchema[None],
        Field(description="Absolute path of the directory the agent works in (must exist)."),
    ] = None
    model: Annotated[
        Annotated[str, Field(pattern=_MODEL)] | SkipJsonSchema[None],
        Field(description="Model alias or name to use instead of the default."),
    ] = None
    max_turns: Annotated[
        Annotated[int, Field(ge=1, le=1000)] | SkipJsonSchema[None],
        Field(description="Stop after this many agent turns."),
    ] = None
    max_budget_usd: Annotated[
        Annotated[float, Field(ge=0.000001, le=10_000)] | SkipJsonSchema[None],
        Field(description="Stop when this call has cost this many US dollars."),
    ] = None
    session_id: Annotated[
        Annotated[str, Field(pattern=_UUID)] | SkipJsonSchema[None],
        Field(description="Resume this earlier session of the same tool to ask a follow-up."),
    ] = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class CallOutput(BaseModel):
    """The structuredContent of a tool result; its JSON schema is the outputSchema."""

    result: str = Field(description="The agent's final answer (or what went wrong).")
    is_error: bool
    session_id: str | None = Field(description="Pass back as session_id to continue.")
    cost_usd: float | None
    num_turns: int | None
    duration_ms: int | None
    usage: dict[str, Any] = Field(description="Token counts reported by the CLI.")
    permission_denials: list[Any] = Field(description="Tool uses the agent was refused.")
    full_result: str | None = Field(
        default=None,
        description="When the answer was cut to the size limit: the resource URI of the whole "
                    "answer (read it with resources/read).")


_JSON_SCHEMA_WORDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum",
                      "lt": "exclusiveMaximum"}


def _published(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as clients read it: no ``"default": null`` on optional arguments (null
    is not a value they accept), and ranges in JSON Schema words (pydantic leaves a
    constraint on an optional number as ``ge``/``le``, which clients ignore)."""
    schema.pop("title", None)  # titles and the model's docstring: bytes on every tool,
    schema.pop("description", None)  # multiplied by the catalog, that no client reads
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        if prop.get("default", ...) is None:
            del prop["default"]
        for pydantic_word, json_word in _JSON_SCHEMA_WORDS.items():
            if pydantic_word in prop:
                prop[json_word] = prop.pop(pydantic_word)
    return schema


INPUT_SCHEMA: dict[str, Any] = _published(CallArguments.model_json_schema())
OUTPUT_SCHEMA: dict[str, Any] = _published(CallOutput.model_json_schema())


def parse_arguments(arguments: Mapping[str, Any] | None) -> CallArguments | str:
    """Validated arguments, or a one-line-per-problem message for the caller."""
    try:
        return CallArguments.model_validate(dict(arguments or {}))
    except ValidationError as exc:
        # Each optional argument is ``constrained X | None``: report the field, not the branch
        # (``model.constrained-str``), and not the None branch's "Input should be None".
        problems = [
            f"{err['loc'][0] if err['loc'] else 'arguments'}: {err['msg']}"
            for err in exc.errors(include_url=False) if err["loc"][-1:] != ("none",)
        ]
        return "invalid arguments: " + "; ".join(problems)
