"""Write the bundled review-sentiment dataset (train/validation/test CSV) into a folder.

Runs do this on their own when the files are missing (`data=text_csv` calls the same
function); this script is for looking at the data or writing a bigger or reseeded copy:

    python scripts/make_text_dataset.py                      # data/generated/reviews/
    python scripts/make_text_dataset.py --out /tmp/reviews --seed 1 --n-train 10000
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from loralab.data.bundled.reviews import ensure_text_dataset
from loralab.run.resolvers import project_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(project_root()) / "data" / "generated" / "reviews"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=500)
    args = parser.parse_args()
    paths = ensure_text_dataset(args.out, args.seed, args.n_train, args.n_val, args.n_test)
    for split, path in paths.items():
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        counts = dict(Counter(row["label"] for row in rows))
        print(f"{split:<11} {len(rows):>6} rows {counts}  {path}")
        print(f"            e.g. {rows[0]['text']!r} -> {rows[0]['label']}")


if __name__ == "__main__":
    main()
