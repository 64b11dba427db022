"""Reading a JSON request body: the cheap guards that run before parsing, then the parse.

Pydantic (:mod:`sentiment.web.schemas`) checks what the body means; this
module makes sure that reading it is safe and that a body that cannot be read
gets a message saying why. Parsed once per request: the rate limiter reads it
too, to count the reviews of a batch.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import g, request

# The most reviews one request may ask to predict.
MAX_BATCH = 1_000


class BodyError(Exception):
    """A JSON API request that cannot be served; answered as {"error": message}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
              bool: "boolean", type(None): "null"}


# A JSON string (escapes included), or a character that opens a value in a list or object.
JSON_STRING_OR_SEPARATOR = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{,]')
# A valid request holds one object and at most one list of MAX_BATCH reviews.
MAX_SEPARATORS = MAX_BATCH + 16
# Quotes a body may hold for too_many_values to hop between them: a valid batch
# holds two per review and whatever quotes its reviews escape.
MAX_QUOTES_HOPPED = 64 * MAX_BATCH
BACKSLASH = ord("\\")
# Smaller bodies parse into a few MB at most, whatever they hold: not counted.
COUNT_VALUES_ABOVE = 64 * 1024


def too_many_values(raw: bytes) -> bool:
    """Whether ``raw`` holds more JSON values than any valid request.

    Counted before parsing: parsed, 32 MB of ``{},`` are 11 million dicts and
    1 GB of memory, only to be refused for holding too many reviews. Commas and
    opening brackets outside strings bound the number of values; the count
    stops at the limit, so that a body of millions costs no more than a valid one.

    The scan hops from quote to quote with ``bytes.find`` and counts the
    separators between strings with ``bytes.count``, both in C: a batch of
    1,000 reviews is a few thousand hops, where the regular expression
    stepped through every character of every review (docs/measurements.md).
    A body of more quotes than valid requests hold (escaped ones, say) is
    scanned by the expression, which costs the same whatever it holds.
    """
    if raw.count(b'"') > MAX_QUOTES_HOPPED:
        return too_many_values_by_expression(raw)
    separators = 0
    start, inside = 0, False
    while True:
        quote = raw.find(b'"', start)
        if inside:
            if quote < 0:
                return False  # an unterminated string: the parser refuses it
            # The backslashes just before it, counted in place (the string's opening
            # quote, or the escaped one hopped to, stops the count).
            backslashes = 0
            while raw[quote - 1 - backslashes] == BACKSLASH:
                backslashes += 1
            inside = backslashes % 2 == 1  # an escaped quote leaves the string open
        else:
            end = len(raw) if quote < 0 else quote
            separators += (raw.count(b",", start, end) + raw.count(b"[", start, end)
                           + raw.count(b"{", start, end))
            if separators > MAX_SEPARATORS:
                return True
            if quote < 0:
                return False
            inside = True
        start = quote + 1


def too_many_values_by_expression(raw: bytes) -> bool:
    """:func:`too_many_values` by the regular expression, one match per string or separator."""
    separators = 0
    for match in JSON_STRING_OR_SEPARATOR.finditer(raw):
        if match.end() - match.start() == 1:
            separators += 1
            if separators > MAX_SEPARATORS:
                return True
    return False


def json_int(digits: str) -> int:
    """A JSON integer; BodyError for one longer than Python converts (4,300 digits).

    Such a number is valid JSON, so "not valid JSON" would mislead.
    """
    try:
        return int(digits)
    except ValueError:
        raise BodyError(f"the request body holds a number of {len(digits.lstrip('-')):,} "
                        "digits, too long to read") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members; BodyError if a key repeats (which one wins is up to the
    parser, so a client and a proxy could read two different requests)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BodyError(f'the request body gives the key "{key}" more than once')
            seen.add(key)
    return data


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent; BodyError for one too large for a float
    (1e999999 would become infinity)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BodyError(f"the request body holds a number too large to read ({text[:20]})")
    return value


def _not_a_number(name: str) -> float:
    raise BodyError(f"the request body holds {name}, which is not a JSON number")


def json_body() -> dict[str, Any]:
    """The request's JSON object, parsed once per request; BodyError if it cannot be read."""
    if "json_body" not in g:
        try:
            g.json_body = _parse()
        except BodyError as exc:
            g.json_body = exc
    if isinstance(g.json_body, BodyError):
        raise g.json_body
    body: dict[str, Any] = g.json_body
    return body


def _parse() -> dict[str, Any]:
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    if len(raw) > COUNT_VALUES_ABOVE and too_many_values(raw):
        raise BodyError(f"the request body holds too many JSON values for a request "
                        f"(at most {MAX_BATCH:,} reviews)")
    try:
        data = json.loads(raw, parse_int=json_int, parse_float=_finite,
                          parse_constant=_not_a_number, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise BodyError("the request body nests arrays or objects too deeply to read") from None
    except ValueError:  # bad JSON or UTF-8
        raise BodyError("the request body is not valid JSON (in UTF-8)") from None
    if not isinstance(data, dict):
        raise BodyError("the request body must be a JSON object, not "
                        + JSON_TYPES.get(type(data), type(data).__name__))
    return data
