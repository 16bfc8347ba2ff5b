"""claude-mcp-bridge: your Claude Code agents and skills as MCP tools.

One call, in the order it passes through the modules (the README's Development section
draws the whole layout):

    agents_registry        files -> Registry (definitions and diagnostics)
    catalog                Registry -> published tools, each with its ToolPolicy
    server                 MCP request -> bridge call; the bridge's values -> MCP results
    bridge                 admit (arguments, policy, command, budget) -> execute (slots,
                           runner, result, settle)
    policy -> command -> runner -> result -> ledger

This package imports nothing on import: each entry point loads only what it needs
(``serve`` the SDK and a transport, ``list`` and ``usage`` neither).
"""

__version__ = "0.1.0"
"""The one place the version is written: the build (hatch), ``--version``, the bundle's
manifest and ``server.json`` read it from here, and a test holds them equal."""
