"""Example reviews the form offers to try: one of each kind a visitor wonders about."""

from __future__ import annotations

# (key, what it shows, the review): the key is what /?example= takes.
EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("positive", "Clearly positive",
     "A wonderful film: the cast is superb, the story moving and the ending beautiful. "
     "I loved every minute of it and will watch it again."),
    ("negative", "Clearly negative",
     "Dull, far too long and badly acted. The plot makes no sense and the jokes fall flat. "
     "A waste of two hours."),
    ("mixed", "Mixed",
     "The photography is stunning and the lead gives a fine performance, but the script is "
     "a mess and the last hour drags badly."),
    ("sarcastic", "Sarcastic",
     "Oh great, another two hours of my life I will never get back. Truly a masterpiece of "
     "boredom, if that is what you are after."),
    ("short", "Short", "Not bad at all."),
)
BY_KEY = {key: text for key, _, text in EXAMPLES}
