"""Test records in the ledger: the schema migration and the queries `--compare` uses."""

import sqlite3
from datetime import UTC, datetime, timedelta

from claude_mcp_bridge import ledger_schema as ledger_module
from claude_mcp_bridge.agent_tests.history import (
    CaseRecord,
    case_records,
    last_run_of_other_version,
    record_case,
)
from claude_mcp_bridge.ledger import Ledger
from claude_mcp_bridge.ledger_schema import SCHEMA_VERSION

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def test_a_version_1_ledger_gains_the_test_table_and_keeps_its_calls(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    for statement in ledger_module._MIGRATIONS[0]:
        db.execute(statement)
    db.execute("INSERT INTO calls (id, tool, kind, definition_path, definition_sha256, caller, "
               "started_at, outcome, prompt_chars, prompt_sha256, owner) VALUES ('c1', "
               "'agent_x', 'agent', 'x.md', 'abc', 'cli', '2025-01-01T00:00:00.000000Z', 'ok', "
               "1, 'h', 'host:1:1')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Ledger.open(path) as ledger:
        assert ledger.get("c1")["outcome"] == "ok"
        record_case(ledger, record("run", "sha", "a"))
        assert [r.case_name for r in case_records(ledger, "run")] == ["a"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def record(run_id, sha, case, status="passed"):
    return CaseRecord(run_id=run_id, kind="agent", name="reviewer", definition_path="r.md",
                      definition_sha256=sha, test_file="t.yaml", case_name=case, attempt=1,
                      status=status, message="bad \udcff text" if status != "passed" else None,
                      cost_usd=0.01, duration_ms=100)


def test_the_last_run_of_another_version_is_the_latest_with_a_different_hash(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        def store(run_id, sha, minutes, *cases):
            for case in cases:
                record_case(ledger, record(run_id, sha, case),
                                   now=T0 + timedelta(minutes=minutes))

        assert last_run_of_other_version(ledger, "agent", "reviewer", "c") == []
        store("r1", "a", 0, "x", "y")
        store("r2", "b", 1, "x")
        store("r3", "c", 2, "x")
        store("r4", "c", 3, "x")
        earlier = last_run_of_other_version(ledger, "agent", "reviewer", "c")
        assert [(r.run_id, r.case_name) for r in earlier] == [("r2", "x")]
        assert earlier[0].recorded_at == "2025-03-10T12:01:00.000000Z"
        assert [r.run_id for r in last_run_of_other_version(ledger, "agent", "reviewer", "b")] \
            == ["r4"]
        assert last_run_of_other_version(ledger, "skill", "reviewer", "c") == []
        record_case(ledger, record("r5", "d", "x", status="failed"))
        assert case_records(ledger, "r5")[0].message == "bad ? text"  # storable text
