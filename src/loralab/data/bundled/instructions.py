"""The bundled instruction dataset: short tasks whose answers can be checked exactly.

Every example is built by a seeded `random.Random` from templates and word lists written
for this project (nothing is copied from another dataset), so the same seed always gives
the same files. Four task families, each answer in one fixed format:

* `date`: a date written out ("3 May 2021", "May 3rd, 2021", ...) -> ISO 8601 `2021-05-03`;
* `unit`: a metric conversion ("How many grams are in 2.5 kg?") -> the number, `2500`;
* `extract`: a field of an order record, in a fixed format: the customer as
  `Surname, Given name`, or the order number as `ORD-48213`;
* `arithmetic`: a sum or difference of two small numbers -> `42`.

What makes it measure generalisation, not memorisation: validation and test examples use
phrasings training never shows (other instruction templates, other record sentences) and
values training never shows (years after 2009, unit amounts, names and number pairs drawn
from sets disjoint from the training ones). A model must learn each format, not the rows.

`ensure_instruction_dataset` writes train.jsonl / validation.jsonl / test.jsonl (fields
`prompt`, `response`, `family`) into a folder, once.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from decimal import Decimal

from loralab.data.bundled.write_once import JSONL_SPLIT_FILES, SeededDataset, jsonl_text

SPLIT_FILES = JSONL_SPLIT_FILES

GENERATOR_VERSION = 1  # bump when the templates change, so old files are rewritten
FAMILIES = ("date", "unit", "extract", "arithmetic")

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
TRAIN_YEARS, HELD_OUT_YEARS = range(1960, 2010), range(2010, 2040)

# Instruction phrasings: (seen in training, held out for validation and test).
DATE_ASKS = (
    ("Convert {d} to ISO 8601 format.", "Write {d} as YYYY-MM-DD.",
     "What is {d} in ISO format?", "Give the ISO date for {d}.",
     "Please reformat this date as an ISO date: {d}"),
    ("Rewrite the date {d} in the form YYYY-MM-DD.", "{d} - express this date in ISO 8601.",
     "I need {d} as an ISO 8601 date."),
)  # fmt: skip
UNIT_ASKS = (
    ("Convert {v} {a} to {b}.", "How many {b} are in {v} {a}?", "{v} {a} is how many {b}?",
     "Express {v} {a} in {b}."),
    ("What is {v} {a} when written in {b}?", "Change {v} {a} into {b}.",
     "Give {v} {a} in {b}, please."),
)  # fmt: skip
# (from unit, to unit, factor): amount in `to` = amount in `from` x factor
UNITS = (
    ("km", "metres", Decimal(1000)), ("metres", "centimetres", Decimal(100)),
    ("kg", "grams", Decimal(1000)), ("litres", "millilitres", Decimal(1000)),
    ("centimetres", "millimetres", Decimal(10)), ("metres", "km", Decimal("0.001")),
    ("grams", "kg", Decimal("0.001")), ("millilitres", "litres", Decimal("0.001")),
)  # fmt: skip
RECORDS = (
    ("Order {n} was placed by {g} {s} from {c}.", "{g} {s} ({c}) placed order {n} yesterday.",
     "Customer: {g} {s}. City: {c}. Order number: {n}.",
     "New order {n} - buyer {g} {s}, shipping to {c}."),
    ("On Monday, {g} {s} of {c} sent us order {n}.",
     "Ref {n}: a parcel for {g} {s} in {c}.", "{c} customer {g} {s} has order number {n}."),
)  # fmt: skip
NAME_ASKS = (
    ("Give the customer's name as 'Surname, Given name'.",
     "Who is the customer? Answer as Surname, Given name."),
    ("Write the buyer's name in the form 'Surname, Given name'.",),
)  # fmt: skip
ORDER_ASKS = (
    ("What is the order number? Answer as ORD-<number>.",
     "Give the order number in the format ORD-<number>."),
    ("Write the order reference as ORD followed by a dash and its number.",),
)  # fmt: skip
GIVEN_NAMES = (
    ("Maria", "John", "Aisha", "Pedro", "Mei", "Olga", "Samuel", "Ines", "Tomas", "Hana",
     "Lucas", "Nadia", "Omar", "Clara", "Felix", "Rosa", "Ivan", "Lena", "Marco", "Sofia"),
    ("Elena", "Yusuf", "Greta", "Rafael", "Keiko", "Anders", "Leila", "Bruno", "Zara", "Milan"),
)  # fmt: skip
SURNAMES = (
    ("Lopez", "Smith", "Khan", "Silva", "Chen", "Ivanova", "Okafor", "Moreau", "Novak",
     "Tanaka", "Berg", "Haddad", "Rossi", "Schmidt", "Kowalski", "Jensen", "Costa", "Nair"),
    ("Petrov", "Almeida", "Fischer", "Sato", "Duval", "Larsen", "Mendez", "Yilmaz", "Horvat"),
)  # fmt: skip
CITIES = (
    ("Porto", "Leeds", "Lyon", "Graz", "Turin", "Malmo", "Ghent", "Cork", "Brno", "Bergen"),
    ("Split", "Basel", "Tartu", "Seville", "Utrecht", "Krakow", "Aarhus"),
)  # fmt: skip
ARITHMETIC_ASKS = (
    ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?"),
    ("Work out {a} {op} {b}.", "Tell me the result of {a} {op} {b}."),
)  # fmt: skip

Example = tuple[str, str]  # (prompt, response)


def held_out(key: str) -> bool:
    """Whether a value belongs to the held-out half: a fixed split of values, not of rows."""
    return zlib.crc32(key.encode()) % 10 < 3  # 30% of the values, never seen in training


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def date_example(test: bool, rng: random.Random) -> Example:
    year = rng.choice(HELD_OUT_YEARS if test else TRAIN_YEARS)
    month = rng.randrange(12)
    day = rng.randint(1, DAYS_IN_MONTH[month])
    name = MONTHS[month]
    written = rng.choice(
        (f"{day} {name} {year}", f"{name} {day}, {year}", f"{_ordinal(day)} {name} {year}",
         f"the {_ordinal(day)} of {name}, {year}", f"{name} {_ordinal(day)}, {year}")
    )  # fmt: skip
    prompt = rng.choice(DATE_ASKS[test]).format(d=written)
    return prompt, f"{year:04d}-{month + 1:02d}-{day:02d}"


def _number(value: Decimal) -> str:
    """2500, 2.5, 0.035: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def unit_example(test: bool, rng: random.Random) -> Example:
    source, target, factor = rng.choice(UNITS)
    while True:  # an amount of the wanted half: 1 to 99, with a decimal place half the time
        amount = Decimal(rng.randint(1, 99))
        if rng.random() < 0.5:
            amount += Decimal(rng.randint(1, 9)) / 10
        if held_out(f"unit{amount}") == test:
            break
    prompt = rng.choice(UNIT_ASKS[test]).format(v=_number(amount), a=source, b=target)
    return prompt, _number(amount * factor)


def extract_example(test: bool, rng: random.Random) -> Example:
    given, surname = rng.choice(GIVEN_NAMES[test]), rng.choice(SURNAMES[test])
    city, number = rng.choice(CITIES[test]), rng.randint(10000, 99999)
    record = rng.choice(RECORDS[test]).format(n=number, g=given, s=surname, c=city)
    if rng.random() < 0.5:
        return f"{record} {rng.choice(NAME_ASKS[test])}", f"{surname}, {given}"
    return f"{record} {rng.choice(ORDER_ASKS[test])}", f"ORD-{number}"


def arithmetic_example(test: bool, rng: random.Random) -> Example:
    while True:
        a, b = rng.randint(10, 99), rng.randint(1, 49)
        op = rng.choice("+-")
        if held_out(f"arith{a}{op}{b}") == test and (op == "+" or a > b):
            break
    prompt = rng.choice(ARITHMETIC_ASKS[test]).format(a=a, op=op, b=b)
    return prompt, str(a + b if op == "+" else a - b)


MAKERS: dict[str, Callable[[bool, random.Random], Example]] = {
    "date": date_example,
    "unit": unit_example,
    "extract": extract_example,
    "arithmetic": arithmetic_example,
}


def generate_split(n: int, test: bool, rng: random.Random, taken: set[str]) -> list[dict]:
    """n distinct examples, the families in turn, none whose prompt another split holds."""
    rows: list[dict] = []
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"cannot generate {n} distinct examples; ask for fewer.")
        family = FAMILIES[len(rows) % len(FAMILIES)]
        prompt, response = MAKERS[family](test, rng)
        if prompt not in taken:
            taken.add(prompt)
            rows.append({"prompt": prompt, "response": response, "family": family})
    rng.shuffle(rows)
    return rows


# writes train.jsonl / validation.jsonl / test.jsonl into a folder, once per seed and sizes
ensure_instruction_dataset = SeededDataset(
    SPLIT_FILES, GENERATOR_VERSION, generate_split, jsonl_text, sizes=(2000, 200, 400)
)
