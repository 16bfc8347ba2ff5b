"""Router mode: find_agent ranks, run_agent runs; the ranking itself."""

import pytest
from mcp import Client

from agents_registry import Roots, load_registry
from claude_mcp_bridge.catalog import build_catalog
from claude_mcp_bridge.config import Config
from claude_mcp_bridge.router import Weights, router_for
from claude_mcp_bridge.server import create_server, open_bridge
from claude_mcp_bridge.text import stem, user_phrases, words

pytestmark = pytest.mark.anyio


def team(workspace):
    workspace.agent("sql-migration-reviewer", description=(
        "Reviews SQL schema migrations for table locks, data loss and rollback safety."))
    workspace.agent("frontend-a11y", description=(
        "Audits React components for accessibility (ARIA roles, focus order, contrast)."))
    workspace.agent("k8s-debugger", description=(
        "Debugs Kubernetes workloads (crashing pods, failed rollouts, probes, events)."))
    workspace.skill("changelog")


def test_words_are_stemmed_and_stop_words_dropped():
    assert words("Reviewing the migrations and tables") == [
        stem("review"), stem("migration"), stem("table")]
    assert stem("policies") == stem("policy") and stem("class") != stem("classic")
    assert stem("debugging") == stem("debugger") == stem("debug")
    assert stem("fixes") == stem("fix") and stem("branches") == stem("branch")
    # the light stripper this replaced split both pairs (issue 19)
    assert stem("price") == stem("pricing") and stem("merge") == stem("merged")


def test_words_split_as_the_regex_did_without_it():
    import re

    from claude_mcp_bridge.text import _words

    for text in ["Reviews SQL-migrations (v2.1) for K8s_pods!", "tab\tnew\nline", "", "  x  ",
                 "café naïve 東京 z", "lone \ud800 surrogate"]:
        assert _words(text) == re.findall(r"[a-z0-9]+", text.lower())


def test_the_best_match_comes_first_with_the_words_that_matched(workspace):
    team(workspace)
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    router = router_for(build_catalog(registry, Config(), workspace.project))
    [best, *_] = router.rank("will this migration lock the users table?")
    assert best.name == "sql-migration-reviewer"
    assert "migration (name, description)" in best.why and "table (description)" in best.why
    assert best.matched[stem("migration")] == ("name", "description")
    assert router.rank("pods keep crashing after the rollout")[0].name == "k8s-debugger"
    assert router.rank("zebra quantum banana") == []


def test_a_task_with_none_of_the_agents_words_is_found_through_related_words(workspace):
    team(workspace)
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    router = router_for(build_catalog(registry, Config(), workspace.project))
    [best, *_] = router.rank("a blind customer cannot get through our signup")
    assert best.name == "frontend-a11y" and not best.matched
    assert best.related[stem("accessibility")] == (stem("blind"), ("description",))
    assert "related words: a11y for blind (name)" in best.why
    assert "accessibility for blind (description)" in best.why


def test_the_vocabulary_knows_everyday_names_for_operations_chores(workspace):
    workspace.agent("tls-keeper", description="Renews TLS certificates before they lapse.")
    workspace.agent("git-helper", description="Untangles version control history.")
    workspace.agent("planner", description="Plans sprints.")
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    router = router_for(build_catalog(registry, Config(), workspace.project))
    [best, *_] = router.rank("the site says our cert expired")
    assert best.name == "tls-keeper" and "tls for cert expired (name, description)" in best.why
    assert router.rank("I'm stuck in a merge conflict")[0].name == "git-helper"


def test_a_related_phrase_weighs_more_than_a_related_word(workspace):
    workspace.agent("alpha", description="Performance.")
    workspace.agent("beta", description="Review.")
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    catalog = build_catalog(registry, Config(), workspace.project)
    task = "please look over the slow part"  # "look over" brings review, "slow" performance
    assert [m.name for m in router_for(catalog).rank(task)] == ["beta", "alpha"]
    even = router_for(catalog, Weights(related_phrase=0.4)).rank(task)
    assert [m.name for m in even] == ["alpha", "beta"]  # a tie, broken by name


def test_words_side_by_side_in_the_description_rank_above_the_same_words_apart(workspace):
    workspace.agent("apart", description="Keeps a state machine and a file store.")
    workspace.agent("together", description="Keeps a state file and a machine store.")
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    router = router_for(build_catalog(registry, Config(), workspace.project))
    [best, other] = router.rank("our state file is corrupted")
    assert (best.name, other.name) == ("together", "apart")
    assert best.pairs == ((stem("state"), stem("file")),) and not other.pairs
    assert 'side by side: "state file"' in best.why


def test_the_users_turns_in_a_descriptions_examples_say_when_to_use_it(workspace):
    workspace.agent("reviewer", description=(
        '"Reviews code. Examples: <example>\\nContext: the checkout flow was just finished\\n'
        'user: \\"I wired up the payment webhooks\\"\\nassistant: \\"I will launch the reviewer'
        '\\"\\n<commentary>Use the Task tool to launch it</commentary></example>"'))
    workspace.agent("other", description="Plans sprints.")
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    router = router_for(build_catalog(registry, Config(), workspace.project))
    [best, *_] = router.rank("payment webhooks after checkout, launch")
    assert best.name == "reviewer"
    assert best.matched[stem("webhook")] == ("phrases", "description")
    assert best.matched[stem("checkout")] == ("phrases", "description")
    # the assistant's turn and the commentary are the agent talking, not the user
    assert best.matched[stem("launch")] == ("description",)
    assert "webhooks (when to use, description)" in best.why
    assert user_phrases("Audits code. Context: large monorepos.") == ""  # prose, no example


def test_a_number_in_the_task_counts_less_than_a_word(workspace):
    workspace.agent("cpp-pro", description="C++20 and its memory.")
    workspace.agent("dataframe-wrangler",
                    description="Reshapes pandas dataframes and their memory.")
    workspace.agent("go-pro", description="Writes Go services.")
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    catalog = build_catalog(registry, Config(), workspace.project)
    task = "my pandas job needs 20 GB of memory"
    assert router_for(catalog).rank(task)[0].name == "dataframe-wrangler"
    # counted as a word, "20" is as distinctive as "pandas", in a shorter description
    assert router_for(catalog, Weights(numbers=1.0)).rank(task)[0].name == "cpp-pro"


def test_past_success_breaks_a_tie(workspace):
    workspace.agent("reviewer-a", description="Reviews Python code.")
    workspace.agent("reviewer-b", description="Reviews Python code.")
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    router = router_for(build_catalog(registry, Config(), workspace.project))
    plain = [m.name for m in router.rank("review python code")]
    assert plain == ["reviewer-a", "reviewer-b"]  # equal scores: by name
    history = {"agent_reviewer-a": (1, 10), "agent_reviewer-b": (9, 10)}
    ranked = router.rank("review python code", history=history)
    assert [m.name for m in ranked] == ["reviewer-b", "reviewer-a"]
    assert "10 past calls, 90% succeeded" in ranked[0].why


async def test_router_mode_publishes_two_tools_that_find_and_run(workspace, fake_claude):
    team(workspace)
    fake_claude.script([{"init": {}}, {"result": {"result": "No locks taken."}}])
    settings = workspace.settings(fake_claude, {"catalog": {"mode": "router"}})
    with open_bridge(settings) as bridge:
        async with Client(create_server(bridge)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            found = await client.call_tool("find_agent", {"task": "does my migration lock?"})
            ran = await client.call_tool(
                "run_agent", {"name": found.structured_content["matches"][0]["name"],
                              "prompt": "check 0042_add_index.sql"})
            missing = await client.call_tool("run_agent", {"name": "nobody", "prompt": "x"})
    assert names == ["find_agent", "run_agent"]
    assert found.structured_content["matches"][0]["tool"] == "agent_sql-migration-reviewer"
    assert "sql-migration-reviewer" in found.content[0].text
    assert ran.content[0].text == "No locks taken."
    assert fake_claude.last()["prompt"] == "check 0042_add_index.sql"
    assert '--agent=sql-migration-reviewer' in fake_claude.last()["argv"]
    assert missing.is_error and "find_agent" in missing.content[0].text


async def test_both_mode_publishes_every_tool_and_the_router(workspace, fake_claude):
    team(workspace)
    settings = workspace.settings(fake_claude, {"catalog": {"mode": "both"}})
    with open_bridge(settings) as bridge:
        async with Client(create_server(bridge)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            bad = await client.call_tool("find_agent", {"task": "", "limit": 0})
    assert names[-3:] == ["find_agent", "run_agent", "test_agent"]
    assert "agent_k8s-debugger" in names
    assert bad.is_error and "task" in bad.content[0].text


async def test_in_tools_mode_the_router_is_not_there(workspace, fake_claude):
    team(workspace)
    with open_bridge(workspace.settings(fake_claude)) as bridge:
        async with Client(create_server(bridge)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
    assert "find_agent" not in names


FLOOR = {  # measured: 83.7%, 91.8%, 0.881, 77.0%; team set 86.0%, 92.4%
    "heldout top-1": 0.81, "heldout top-3": 0.89, "heldout MRR": 0.86,
    "heldout hard top-3": 0.73, "team top-1": 0.82, "team top-3": 0.90}


def test_ranking_on_public_collections_stays_above_its_floors():
    """Floors a little under the figures measured when the ranker was last changed (README);
    the held-out split was never looked at while tuning."""
    from bench.router_eval import evaluate, groups

    scores = groups(evaluate())
    held, hard, team = scores["all/heldout"], scores["all/heldout/hard"], scores["team/team"]
    assert held.items >= 200 and hard.items >= 60 and team.items >= 200
    assert held.top1 >= FLOOR["heldout top-1"], scores
    assert held.top3 >= FLOOR["heldout top-3"], scores
    assert held.mrr >= FLOOR["heldout MRR"], scores
    assert hard.top3 >= FLOOR["heldout hard top-3"], scores
    assert team.top1 >= FLOOR["team top-1"] and team.top3 >= FLOOR["team top-3"], scores
