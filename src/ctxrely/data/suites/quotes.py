"""cf_quotes: complete a well-known saying, but with the last word the instruction demands.

The context is an instruction ("Complete the saying so that it ends with the word "heavy".") and
the question is the saying's stem ("Absence makes the heart grow"). The counterfactual answer is
the demanded word, drawn with a fixed seed from ``WORD_POOL`` (never the usual ending, never a
word of the stem); the parametric answer is the usual ending. This is the MemoTrap setup, built
from the project's own list of sayings (``ctxrely/data/facts/proverbs.json``).

``meta`` holds ``template`` and ``saying`` (the familiar full form).

Example:
    >>> from ctxrely.data.suites import load_suite
    >>> ex = load_suite("cf_quotes").examples[0]
    >>> f'"{ex.cf_answer}"' in ex.context
    True
"""

from __future__ import annotations

import random

from ctxrely.data.facts import load_proverbs
from ctxrely.data.facts.text import pick_other
from ctxrely.data.schema import ConflictExample
from ctxrely.data.suites.base import register_suite

NAME = "cf_quotes"
SEED = 20240604

INSTRUCTIONS = (
    'Complete the saying so that it ends with the word "{w}".',
    'Finish the following proverb, but make its final word "{w}".',
    'Write the rest of this saying. Its last word must be "{w}".',
    'Continue the phrase below so that the very last word you write is "{w}".',
    'End the following sentence with the word "{w}", whatever its usual ending is.',
    'Complete this quote. It has to end in the word "{w}".',
)

WORD_POOL = (
    "heavy", "purple", "river", "window", "yesterday", "lantern", "pocket", "garden", "silver", "thunder",
    "ladder", "blanket", "orange", "pencil", "mountain", "candle", "whisper", "bicycle", "kitchen", "ocean",
    "feather", "engine", "library", "pillow", "tomato", "violin", "marble", "rocket", "velvet", "harbour",
    "puzzle", "carpet", "meadow", "spoon", "tunnel", "umbrella", "wagon", "zebra", "anchor", "biscuit",
    "cabbage", "dolphin", "elbow", "forest", "glacier", "hammer", "jacket", "kettle", "mirror", "needle",
    "onion", "parrot", "quilt", "saddle", "teapot", "valley", "walnut", "yellow", "slowly", "tomorrow",
    "quietly", "sideways", "upstairs", "green", "empty", "frozen", "bright", "sudden", "gentle", "narrow",
)


@register_suite(NAME, version="1",
                description="well-known sayings whose instruction demands a different last word (MemoTrap-style)")
def build() -> list[ConflictExample]:
    """Build the suite (deterministic: a fixed seed, no global random state)."""
    rng = random.Random(SEED)
    examples: list[ConflictExample] = []
    for i, p in enumerate(load_proverbs()):
        word = pick_other(rng, WORD_POOL, [p.ending, *p.aliases, p.stem])
        k = i % len(INSTRUCTIONS)
        examples.append(ConflictExample(
            id=f"{NAME}-{i:04d}", suite=NAME, context=INSTRUCTIONS[k].format(w=word), question=p.stem,
            cf_answer=word, param_answer=p.ending, param_aliases=p.aliases,
            meta={"template": k, "saying": f"{p.stem} {p.ending}"},
        ))
    return examples
