"""Agent testing: does an agent still do its job, at what cost, and did an edit make it worse?

The flow, one module a stage::

    cases      YAML test files -> validated cases (found in agent-tests/ beside definitions)
    checks     what a run produced -> pass/fail per check kind
    execute    one call through policy, budget, slots, the runner and the ledger
    judge      another agent scores the answer against a rubric (0-1)
    runner     cases x repeat, K at a time, each in a fresh copy of its fixture -> records
    summary    records -> pass rate, mean score, cost, p50 time
    compare    this run vs the last run of an earlier version (content hash) of a definition
    report     text, JSON, JUnit XML
    cli        ``claude-mcp-bridge test``;  mcp_tool: the ``test_agent`` MCP tool

Import the module you need: this package imports nothing, so the server and the CLI
each load only their part. The names every part shares are here.
"""

TOOL_NAME = "test_agent"
TESTS_DIR = "agent-tests"
"""Test files live in this folder beside the definitions (``.claude/agent-tests/``)."""
SUFFIXES = (".yaml", ".yml")
DEFAULT_THRESHOLD = 0.1
"""How much worse counts as a regression (see ``compare.py``)."""
