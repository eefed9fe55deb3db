"""The bundled offline text dataset: short English product and place reviews, positive or negative.

Every sentence is built from templates and word lists written for this project (nothing is
copied from another corpus) by a seeded `random.Random`, so the same seed always gives the
same CSV files. What makes the task need a pretrained model:

* **held-out vocabulary**: the words that carry the sentiment (adjectives and verbs) are
  split in two lists of synonyms. Training sentences use one list, validation and test
  sentences only the other, so a model scores above chance on val/test only if it knows
  that "atrocious" means what "awful" means. A backbone trained from scratch has never seen
  those words; a pretrained one has.
* **negation**: "was not good", "was far from awful" flip the polarity of the word.
* **contrast**: in "I expected it to be dreadful, but it was lovely" the label follows the
  second clause, so the first sentiment word is a distractor.
* **paraphrase**: the same judgement is phrased as a description, a verb ("I adored ...")
  or a recommendation, around varied subjects, intensifiers and context.

`ensure_text_dataset` writes train.csv / validation.csv / test.csv (columns `text`, `label`
with labels `negative` / `positive`) into a folder, once; `scripts/make_text_dataset.py`
is its command line.
"""

from __future__ import annotations

import random
from functools import partial

from loralab.data.bundled.write_once import SeededDataset, csv_text

LABELS = ("negative", "positive")
SPLIT_FILES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}
GENERATOR_VERSION = 2  # bump when the templates change, so old files are rewritten

SUBJECTS = (
    "the movie", "the hotel room", "this phone", "the pasta", "our waiter", "the concert",
    "the new album", "the hiking trail", "the laptop", "the customer service", "the museum tour",
    "the train ride", "the novel", "the coffee", "the app", "the hostel", "the headphones",
    "the pizza", "the dentist", "the theme park", "the sofa", "the yoga class", "the game",
    "the bakery", "the tour guide", "the rental car", "the sushi", "the play", "the camera",
    "the spa", "the podcast", "the gym", "the bicycle", "the wedding venue", "the soup",
)  # fmt: skip
INTENSIFIERS = ("", "", "really ", "quite ", "truly ", "rather ", "very ", "absolutely ")
CONTEXTS = (
    "", "", "", " last week", " on Saturday", " during our trip", " this time",
    " for the price", " overall", " in my opinion",
)  # fmt: skip

# Sentiment words, each list split into (seen in training, held out for val/test).
ADJECTIVES = {
    "positive": (
        ("good", "great", "excellent", "wonderful", "lovely", "pleasant", "enjoyable",
         "fantastic", "delightful", "charming", "impressive", "brilliant", "nice"),
        ("superb", "terrific", "marvelous", "outstanding", "splendid", "fabulous", "amazing",
         "magnificent", "first-rate", "exceptional", "stellar", "sublime"),
    ),
    "negative": (
        ("bad", "awful", "terrible", "poor", "horrible", "unpleasant", "disappointing",
         "boring", "nasty", "mediocre", "annoying", "ugly", "useless"),
        ("atrocious", "lousy", "dismal", "abysmal", "appalling", "dreadful", "tedious",
         "miserable", "shoddy", "pathetic", "horrendous", "subpar"),
    ),
}  # fmt: skip
VERBS = {
    "positive": (
        ("loved", "enjoyed", "liked", "adored", "appreciated"),
        ("cherished", "relished", "treasured", "savored", "was thrilled by"),
    ),
    "negative": (
        ("hated", "disliked", "regretted", "could not stand", "was annoyed by"),
        ("loathed", "despised", "detested", "abhorred", "was disgusted by"),
    ),
}  # fmt: skip
NEGATORS = ("not", "not at all", "far from", "never", "anything but", "hardly")
RECOMMEND = {
    "positive": ("I would recommend it to anyone", "I would gladly pay for it again"),
    "negative": ("I would warn everyone about it", "I want my money back"),
}


def _other(label: str) -> str:
    return LABELS[1 - LABELS.index(label)]


def _word(table: dict, label: str, held_out: bool, rng: random.Random) -> str:
    return rng.choice(table[label][1 if held_out else 0])


def _describe(label: str, held_out: bool, rng: random.Random) -> str:
    """`the pasta was really superb` or, negated, `the pasta was far from dismal`."""
    subject = rng.choice(SUBJECTS)
    if rng.random() < 0.35:  # a negated word of the opposite polarity
        word = _word(ADJECTIVES, _other(label), held_out, rng)
        return f"{subject} was {rng.choice(NEGATORS)} {word}"
    return f"{subject} was {rng.choice(INTENSIFIERS)}{_word(ADJECTIVES, label, held_out, rng)}"


def _sentence(label: str, held_out: bool, rng: random.Random) -> str:
    """One review sentence whose meaning is `label`."""
    kind = rng.random()
    context = rng.choice(CONTEXTS)
    if kind < 0.4:
        text = f"{_describe(label, held_out, rng)}{context}"
    elif kind < 0.6:
        text = f"I {_word(VERBS, label, held_out, rng)} {rng.choice(SUBJECTS)}{context}"
    elif kind < 0.85:  # a distractor first, then the judgement that counts
        before = _word(ADJECTIVES, _other(label), held_out, rng)
        after = _word(ADJECTIVES, label, held_out, rng)
        subject = rng.choice(SUBJECTS)
        template = rng.choice(
            (
                "I expected {s} to be {b}, but it was {a}",
                "although {s} looked {b} at first, it turned out {a}",
                "everyone said {s} would be {b}, yet it was {a}",
            )
        )
        text = template.format(s=subject, b=before, a=after)
    else:
        text = f"{_describe(label, held_out, rng)}, and {rng.choice(RECOMMEND[label])}"
    return text[0].upper() + text[1:] + "."


def generate_split(
    n: int, held_out: bool, rng: random.Random, taken: set[str]
) -> list[tuple[str, str]]:
    """n distinct (text, label) rows, balanced, none already in `taken` (other splits)."""
    rows: list[tuple[str, str]] = []
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"cannot generate {n} distinct sentences; ask for fewer.")
        label = LABELS[len(rows) % 2]
        text = _sentence(label, held_out, rng)
        if text not in taken:
            taken.add(text)
            rows.append((text, label))
    rng.shuffle(rows)
    return rows


# writes train.csv / validation.csv / test.csv into a folder, once per seed and sizes
ensure_text_dataset = SeededDataset(
    SPLIT_FILES,
    GENERATOR_VERSION,
    generate_split,
    partial(csv_text, ("text", "label")),
    sizes=(3000, 500, 500),
)
