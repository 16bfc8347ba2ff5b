from __future__ import annotations

import pytest

from agents_registry import FrontMatterError, split_front_matter


def reason_for(text: str) -> str:
    with pytest.raises(FrontMatterError) as caught:
        split_front_matter(text)
    return caught.value.reason


def test_front_matter_and_body_are_split() -> None:
    metadata, body = split_front_matter("---\nname: a\ncount: 3\n---\nHello\n")

    assert metadata == {"name": "a", "count": 3}
    assert body == "Hello"


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr-only"])
def test_crlf_and_cr_line_endings_read_like_lf(newline: str) -> None:
    text = "---\nname: a\ntools: Read\n---\nline one\nline two\n".replace("\n", newline)

    metadata, body = split_front_matter(text)

    assert metadata == {"name": "a", "tools": "Read"}
    assert body == "line one\nline two"


def test_a_utf8_bom_before_the_opening_fence_is_ignored() -> None:
    metadata, _ = split_front_matter("\ufeff---\nname: a\n---\n")

    assert metadata == {"name": "a"}


def test_empty_front_matter_is_an_empty_mapping() -> None:
    assert split_front_matter("---\n---\nbody") == ({}, "body")


def test_a_file_may_end_right_after_the_closing_fence() -> None:
    assert split_front_matter("---\nname: a\n---") == ({"name": "a"}, "")


def test_fences_may_carry_trailing_spaces() -> None:
    assert split_front_matter("---  \nname: a\n--- \nbody") == ({"name": "a"}, "body")


def test_body_loses_blank_lines_at_both_ends_but_keeps_indentation() -> None:
    _, body = split_front_matter("---\n---\n\n  \n    code\n\ntext\n\n \n")

    assert body == "    code\n\ntext"


def test_quoted_values_keep_their_exact_text() -> None:
    metadata, _ = split_front_matter(
        "---\ndescription: \"Use it: when 'x' fails, #1\"\nmodel: 'sonnet'\nempty: ''\n---\n"
    )

    assert metadata == {"description": "Use it: when 'x' fails, #1", "model": "sonnet", "empty": ""}


def test_a_later_dashes_line_in_the_body_is_kept() -> None:
    _, body = split_front_matter("---\na: 1\n---\nabove\n---\nbelow\n")

    assert body == "above\n---\nbelow"


@pytest.mark.parametrize("text", ["", "\n", "name: a\n", "\n---\nname: a\n---\n", "----\n---\n"])
def test_text_without_an_opening_fence_has_no_front_matter(text: str) -> None:
    assert reason_for(text).startswith("no front matter")


def test_an_unclosed_fence_is_reported() -> None:
    assert "not closed" in reason_for("---\nname: a\ndescription: b\n")


def test_invalid_yaml_reason_names_the_line_in_the_file() -> None:
    reason = reason_for("---\nname: a\n- b\n---\n")

    assert reason.startswith("invalid YAML in front matter at line 3")
    assert "\n" not in reason


def test_a_control_character_is_invalid_yaml_with_its_line() -> None:
    reason = reason_for("---\nname: a\nb: \x07\n---\n")

    assert reason.startswith("invalid YAML in front matter at line 3")


def test_a_list_is_not_front_matter() -> None:
    assert reason_for("---\n- a\n- b\n---\n") == (
        "front matter must be a mapping of keys to values, got list"
    )


def test_a_scalar_is_not_front_matter() -> None:
    assert reason_for("---\njust text\n---\n").endswith("got str")


def test_keys_that_are_not_strings_become_strings_as_in_javascript() -> None:
    assert split_front_matter("---\n1: a\nfalse: b\n---\n")[0] == {"1": "a", "false": "b"}


def test_unknown_and_python_tags_are_dropped_and_never_constructed() -> None:
    metadata, _ = split_front_matter(
        "---\na: !!python/object/apply:os.system [echo hi]\nb: !custom x\n---\n")

    assert metadata == {"a": ["echo hi"], "b": "x"}


@pytest.mark.parametrize(
    "yaml_text",
    ["a: " + "[" * 20_000 + "]" * 20_000, "a:\n" + "- " * 20_000 + "x"],
    ids=["flow", "block"],
)
def test_very_deep_nesting_is_refused_instead_of_crashing(yaml_text: str) -> None:
    assert reason_for(f"---\n{yaml_text}\n---\n") == "front matter nests deeper than 100 levels"


def test_moderate_nesting_is_fine() -> None:
    metadata, _ = split_front_matter("---\na: " + "[" * 50 + "]" * 50 + "\n---\n")

    assert "a" in metadata
