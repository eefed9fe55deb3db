"""The two bundled corpora, generated from templates and word lists written for this project.

* corpus `a`, "harbour chronicle": modern narrative prose in wrapped paragraphs - names,
  times and distances, dialogue in double quotes, the odd chapter heading.
* corpus `b`, "harbour play": the same town, people and things as an old-fashioned stage
  play - ACT/SCENE headings, each speaker's name on its own line, short lines full of
  thou/dost/'tis/prithee, stage directions in brackets.

Pretraining on `a` teaches the world (names, places, things) and the spelling; fine-tuning
on `b` has to learn a new layout and register - the kind of shift adapters are meant for.
Every character of `b` also occurs in `a`, so the pretraining vocabulary covers it. Each
corpus is a pure function of its seed and length, rebuilt in a fraction of a second, and
random slot fills make it far too varied to memorise.
"""

from __future__ import annotations

import functools
import random
import textwrap
from collections.abc import Callable

DEFAULT_CHARS = 240_000
DEFAULT_SEED = 0

# ---- corpus a: harbour chronicle --------------------------------------------------------
# one name per capital letter, so corpus a spells every upper-case letter corpus b needs
NAMES = (
    "Ada Bruno Clara Dmitri Elena Felix Greta Hugo Ines Jonas Kira Lukas Mira Nils Olga "
    "Pavel Quinn Rosa Stefan Tilda Ugo Vera Wim Xenia Yusuf Zora"
).split()
PLACES = (
    "harbour|station|bakery|lighthouse|market|ferry|bridge|library|quay|workshop|boatyard|"
    "post office|square|chapel|hillside|orchard|canal|tram stop|warehouse|beach"
).split("|")
NOUNS = (
    "letter bicycle lantern parcel umbrella map kettle ticket window engine radio basket "
    "notebook compass jacket rope crate photograph key violin"
).split()
ADJECTIVES_A = (
    "quiet grey crowded narrow sudden bright cold familiar heavy patient careful broken "
    "early late salty windy"
).split()
ADVERBS = "slowly quickly quietly carefully twice again early eagerly calmly".split()
PAST = (
    "opened carried found repaired noticed painted lost borrowed counted dropped "
    "wrapped checked returned"
).split()
MOTIONS = "walked hurried cycled drove wandered ran".split()
PREPOSITIONS = "to past along toward behind across".split()
WEATHER = "rain fog wind snow sunshine drizzle".split()
SAYINGS = (
    "We should leave before the tide turns|Have you seen my {noun}?|It's later than you "
    "think|Don't forget the {noun}|The {place} closes at {time}|I'll be back by {time}"
).split("|")


def _time(r: random.Random) -> str:
    return f"{r.randint(5, 22)}:{r.choice(['00', '15', '30', '45', '05', '50'])}"


def _prose_sentence(r: random.Random) -> str:
    name, other = r.sample(NAMES, 2)
    place, noun = r.choice(PLACES), r.choice(NOUNS)
    adj, adv = r.choice(ADJECTIVES_A), r.choice(ADVERBS)
    pick = r.randrange(9)
    if pick == 0:
        return f"{name} {r.choice(MOTIONS)} {adv} {r.choice(PREPOSITIONS)} the {place}."
    if pick == 1:
        return f"At {_time(r)} the {adj} {noun} was still on the table at the {place}."
    if pick == 2:
        said = r.choice(SAYINGS).format(noun=noun, place=place, time=_time(r))
        end = "" if said.endswith("?") else ","
        return f'"{said}{end}" said {name}, and {other} nodded.'
    if pick == 3:
        km = r.randint(2, 48)
        return f"It was {km} km to the {place}; the road was {adj} and the {r.choice(WEATHER)} never stopped."
    if pick == 4:
        return f"{name} {r.choice(PAST)} the {noun}, then {r.choice(PAST)} it {adv} (nobody asked why)."
    if pick == 5:
        return f"In {r.randint(1890, 2024)}, the {place} had {r.randint(3, 99)} {noun}s and one {adj} clock."
    if pick == 6:
        return f"Why had {other} left the {noun} at the {place}? {name} didn't know."
    if pick == 7:
        return f"The {r.choice(WEATHER)} came in from the sea - {adj}, {r.choice(ADJECTIVES_A)} and {adv} gone!"
    return f"[A note in the margin reads: {noun}, {r.randint(1, 12)} o'clock, {place}.]"


def _prose_paragraph(r: random.Random) -> str:
    if r.random() < 0.08:
        return f"Chapter {r.randint(1, 40)}: The {r.choice(ADJECTIVES_A).title()} {r.choice(NOUNS).title()}"
    sentences = " ".join(_prose_sentence(r) for _ in range(r.randint(3, 7)))
    return textwrap.fill(sentences, width=72)


# ---- corpus b: harbour play -------------------------------------------------------------
# The same town, people and things as corpus a, written as an old-fashioned stage play: what
# a model pretrained on a must learn is the layout and the register, not a new world.
BASE_VERBS = "open carry find mend paint borrow count wrap fetch hide".split()
MOTIONS_BASE = "walk hurry ride wander run sail".split()
PLAY_LINES = (
    "O {noun}, thou {adj} {noun2}, why dost thou wait so {adv}?",
    "'Tis {km} km to the {place}, and the {weather} doth never cease.",
    "Hast thou seen my {noun}? I left it at the {place}.",
    "Hark! the {weather} cometh in from the sea.",
    "I prithee, {name}, bring the {noun} ere {time}.",
    "Alas, the {place} is {adj}, and my {noun} is lost!",
    "Wherefore didst thou {verb} the {noun} so {adv}?",
    "Nay, {name}, the {noun} was {adj} at {time}.",
    "Then let us {motion} to the {place}, and {verb} the {noun} there.",
    "Fie upon thee, thou {adj} {noun}!",
)
DIRECTIONS = (
    "[Enter {who}, with a {noun}.]", "[Exit {who}.]", "[Aside.]", "[Exeunt.]",
    "[The {weather} rises.]", "[Enter {who} and {who2}.]",
)  # fmt: skip


def _roman(n: int) -> str:
    return ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"][n - 1]


def _play_line(r: random.Random) -> str:
    noun, noun2 = r.sample(NOUNS, 2)
    return r.choice(PLAY_LINES).format(
        noun=noun,
        noun2=noun2,
        adj=r.choice(ADJECTIVES_A),
        adv=r.choice(ADVERBS),
        km=r.randint(2, 48),
        place=r.choice(PLACES),
        weather=r.choice(WEATHER),
        name=r.choice(NAMES),
        time=_time(r),
        verb=r.choice(BASE_VERBS),
        motion=r.choice(MOTIONS_BASE),
    )


def _play_scene(r: random.Random) -> str:
    cast = r.sample(NAMES, r.randint(2, 4))
    heading = f"ACT {_roman(r.randint(1, 5))}. SCENE {_roman(r.randint(1, 8))}."
    parts = [f"{heading}\nThe {r.choice(PLACES)}, at {_time(r)}.\n"]
    speaker = ""
    for _ in range(r.randint(4, 10)):
        speaker = r.choice([s for s in cast if s != speaker])  # speakers take turns
        speech = [f"  {speaker}."] + [_play_line(r) for _ in range(r.randint(1, 4))]
        if r.random() < 0.25:
            who, who2 = r.sample(NAMES, 2)
            direction = r.choice(DIRECTIONS)
            speech.append(
                "  "
                + direction.format(
                    who=who, who2=who2, noun=r.choice(NOUNS), weather=r.choice(WEATHER)
                )
            )
        parts.append("\n".join(speech) + "\n")
    return "\n".join(parts)


# ---- the bundle -------------------------------------------------------------------------
CORPORA: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "a": ("harbour chronicle (modern prose)", _prose_paragraph),
    "b": ("harbour play (an old-fashioned stage play)", _play_scene),
}


@functools.lru_cache(maxsize=8)
def corpus_text(name: str, n_chars: int = DEFAULT_CHARS, seed: int = DEFAULT_SEED) -> str:
    """Bundled corpus `name` ('a' or 'b'): at least n_chars characters, the same for a seed;
    or the real text `name` of an installed package ('shakespeare': real_texts.py)."""
    from loralab.data.real_texts import REAL_TEXTS, real_text

    if name in REAL_TEXTS:
        return real_text(name)
    if name not in CORPORA:
        from loralab.errors import ConfigError  # only on bad input: keeps this module light

        raise ConfigError(
            f"data.corpus={name!r} is neither a bundled corpus nor a real text; use one of "
            f"{sorted(CORPORA) + sorted(REAL_TEXTS)} or point data.path at your own text file."
        )
    rng = random.Random(f"{name}:{seed}")  # a string seed: corpora differ even for equal seeds
    make_block = CORPORA[name][1]
    blocks, size = [], 0
    while size < n_chars:
        block = make_block(rng) + "\n\n"
        blocks.append(block)
        size += len(block)
    return "".join(blocks)
