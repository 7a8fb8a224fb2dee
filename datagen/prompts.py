"""Text prompts of the samples: from category names when the source has them, else empty."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.tasks import TRACKING_PROMPT


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


def sample_prompt(
    task: str, categories: Sequence[str | None], *, template: str = "a video of {}"
) -> str:
    """The prompt of one sample: the tracking prompt for tracking, else :func:`category_prompt`."""
    if task == "tracking":
        return TRACKING_PROMPT
    return category_prompt(categories, template=template)


def _article(noun: str) -> str:
    return "an" if noun[0].lower() in "aeiou" else "a"
