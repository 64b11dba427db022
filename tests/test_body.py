"""The guard that counts a JSON body's values before it is parsed."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sentiment.web.body import (
    MAX_QUOTES_HOPPED,
    MAX_SEPARATORS,
    too_many_values,
    too_many_values_by_expression,
)

# Text with what makes strings hard to skip: quotes, backslashes, separators.
TRICKY_TEXT = st.text(alphabet=st.sampled_from('ab"\\,[{}]: \u00e9\n'), max_size=30)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=8)
    | st.dictionaries(TRICKY_TEXT, inner, max_size=5),
    max_leaves=60,
)


def separators_outside_strings(value: object) -> int:
    """What the guard counts, from the parsed value: one opening bracket per list or
    object, one comma between each two items."""
    if isinstance(value, list):
        return 1 + max(len(value) - 1, 0) + sum(map(separators_outside_strings, value))
    if isinstance(value, dict):
        return (1 + max(len(value) - 1, 0)
                + sum(map(separators_outside_strings, value.values())))
    return 0


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.integers(min_value=0, max_value=3))
def test_the_count_is_what_the_parsed_body_holds(value: object, repeat: int) -> None:
    items = [value] * (1 + repeat * 400)  # around the limit as well as under it
    body = json.dumps({"reviews": items}, ensure_ascii=False).encode()
    expected = separators_outside_strings({"reviews": items}) > MAX_SEPARATORS
    assert too_many_values(body) == expected
    assert too_many_values_by_expression(body) == expected


def test_floods_are_refused_and_a_full_valid_batch_is_not() -> None:
    for value in ("{}", "[]", '""', "0", '"\\""'):
        assert too_many_values(('{"reviews": [' + ",".join([value] * 5_000) + "]}").encode())
    assert too_many_values(b"[" * 100_000)
    review = 'He said "fine, [really] {fine}" \\ and left, twice.' * 20
    body = json.dumps({"reviews": [review] * 1_000}).encode()
    assert not too_many_values(body) and not too_many_values_by_expression(body)


def test_a_body_of_escaped_quotes_is_scanned_by_the_expression() -> None:
    """Hopping from quote to quote would cost a Python step per escaped quote."""
    body = b'{"reviews": ["' + b'\\"' * (MAX_QUOTES_HOPPED + 1) + b'"]}'
    assert not too_many_values(body)
    flood = b'{"reviews": [' + b",".join([b'"\\""'] * (MAX_QUOTES_HOPPED // 3 + 1)) + b"]}"
    assert too_many_values(flood)


def test_an_unterminated_string_is_left_to_the_parser() -> None:
    assert not too_many_values(b'{"reviews": ["never closed, [{,')
