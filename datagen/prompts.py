"""Text prompts of the samples: from category names when the source has them, else empty (a
recipe with a fixed prompt, tracking's, declares it in its ``needs``)."""

from __future__ import annotations

from collections.abc import Sequence


def category_prompt(categories: Sequence[str | None], *, template: str = "a video of {}") -> str:
    """``"a video of a dog"``, ``"a video of a dog and a cat"``; ``""`` without categories.

    Args:
        categories: category names of the instances the sample shows (``None`` entries skipped,
            duplicates kept once, order kept).
        template: format string with one ``{}`` for the noun phrase.
    """
    names = list(dict.fromkeys(c.strip().replace("_", " ") for c in categories if c and c.strip()))
    if not names:
        return ""
    phrases = [f"{_article(n)} {n}" for n in names]
    joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return template.format(joined)


def _article(noun: str) -> str:
    return "an" if noun[0].lower() in "aeiou" else "a"
