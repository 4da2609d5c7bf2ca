"""An invented lexicon ("Velan"): a task where in-weights and in-context answers can be told apart.

English two-word phrases (adjective + noun) translate word by word into invented words built
deterministically from the shipped word lists below (seeded hash -> consonant-vowel syllables).
Nouns are split into *trained* nouns, whose translations the training rows teach (so in-weights
learning can answer), and *novel* nouns, which never occur in training (so only a demonstration
in context can supply them). All splits are seeded and deterministic.

Example:
    >>> task = lexicon_task(seed=0)
    >>> row = task.train[0]
    >>> row["output"] == " ".join(task.lexicon[w] for w in row["input"].split())
    True
    >>> len(task.lexicon), len(task.novel_nouns)
    (87, 16)
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

ADJECTIVES = [
    "red", "blue", "green", "small", "big", "old", "young", "cold", "warm", "dark", "bright", "quiet",
    "loud", "fast", "slow", "happy", "sad", "tall", "short", "soft",
]
NOUNS = [
    "cat", "dog", "bird", "fish", "horse", "cow", "sheep", "goat", "mouse", "lion", "tiger", "bear",
    "wolf", "fox", "rabbit", "frog", "tree", "flower", "river", "mountain", "lake", "stone", "house",
    "door", "window", "table", "chair", "book", "pen", "cup", "bowl", "knife", "spoon", "bread", "apple",
    "cheese", "milk", "water", "fire", "wind", "rain", "snow", "sun", "moon", "star", "cloud", "road",
    "bridge", "ship", "boat", "car", "train", "shoe", "hat", "coat", "bell", "drum", "lamp", "clock",
    "key", "ring", "box", "bag", "rope", "wheel", "hammer", "candle",
]
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def invented_word(word: str, seed: int = 0, salt: int = 0) -> str:
    """Two or three consonant-vowel syllables from a hash of ``(seed, word, salt)``."""
    h = hashlib.sha256(f"{seed}\x00{word}\x00{salt}".encode()).digest()
    n = 2 + h[0] % 2
    return "".join(
        _CONSONANTS[h[1 + 2 * i] % len(_CONSONANTS)] + _VOWELS[h[2 + 2 * i] % len(_VOWELS)] for i in range(n)
    )


def build_lexicon(words: list[str], seed: int = 0) -> dict[str, str]:
    """English word -> invented word; distinct, never an English word of the list, never a prefix of another."""
    out: dict[str, str] = {}
    for w in words:
        salt = 0
        while True:
            cand = invented_word(w, seed, salt)
            if cand not in words and not any(cand.startswith(o) or o.startswith(cand) for o in out.values()):
                break
            salt += 1
        out[w] = cand
    return out


@dataclass
class LexiconTask:
    """The lexicon and its deterministic splits (rows are ``{"id", "input", "output"}``)."""

    lexicon: dict[str, str]
    trained_nouns: list[str]
    novel_nouns: list[str]
    train: list[dict[str, str]] = field(default_factory=list)
    test: list[dict[str, str]] = field(default_factory=list)
    novel: list[dict[str, str]] = field(default_factory=list)

    def translate(self, phrase: str) -> str:
        return " ".join(self.lexicon[w] for w in phrase.split())


def lexicon_task(
    n_train: int = 400, n_test: int = 48, n_novel: int = 48, n_novel_nouns: int = 16, seed: int = 0
) -> LexiconTask:
    """Build the task.

    Args:
        n_train: training phrases (adjective + trained noun).
        n_test: held-out phrases: unseen *combinations* of trained words (in-weights can answer).
        n_novel: phrases of an adjective + a novel noun (only the context can answer).
        n_novel_nouns: nouns held out of training entirely.
    """
    rng = random.Random(f"lexicon:{seed}")
    nouns = NOUNS[:]
    rng.shuffle(nouns)
    novel_nouns, trained_nouns = sorted(nouns[:n_novel_nouns]), sorted(nouns[n_novel_nouns:])
    lex = build_lexicon(ADJECTIVES + NOUNS, seed)
    task = LexiconTask(lexicon=lex, trained_nouns=trained_nouns, novel_nouns=novel_nouns)
    combos = [f"{a} {n}" for a in ADJECTIVES for n in trained_nouns]
    rng.shuffle(combos)
    if n_train + n_test > len(combos):
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the {len(combos)} phrases")
    task.train = [
        {"id": f"tr{i}", "input": c, "output": task.translate(c)} for i, c in enumerate(combos[:n_train])
    ]
    task.test = [
        {"id": f"te{i}", "input": c, "output": task.translate(c)}
        for i, c in enumerate(combos[n_train : n_train + n_test])
    ]
    novel = [f"{a} {n}" for a in ADJECTIVES for n in novel_nouns]
    rng.shuffle(novel)
    task.novel = [
        {"id": f"nv{i}", "input": c, "output": task.translate(c)} for i, c in enumerate(novel[:n_novel])
    ]
    return task


def write_task(out_dir: str, seed: int = 0) -> list[str]:
    """Write ``train.jsonl`` (the pool), ``test.jsonl`` and ``novel.jsonl`` of :func:`lexicon_task` to ``out_dir``."""
    import json
    from pathlib import Path

    task = lexicon_task(seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in (("train", task.train), ("test", task.test), ("novel", task.novel)):
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths.append(str(path))
    return paths


if __name__ == "__main__":  # python -m ctxrely.icl.lexicon OUT_DIR
    import sys

    print("\n".join(write_task(sys.argv[1] if len(sys.argv) > 1 else "velan")))
