"""Benchmarks of claude-mcp-bridge (issue 6); not part of the test suite.

``python -m bench`` runs them all and writes ``bench/results.md``; see ``bench/README.md``.
"""
