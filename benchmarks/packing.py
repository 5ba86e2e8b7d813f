"""Packing speed: `minigpt.packing.pack` on the data kit's train split size
(docs/data-kit.md: 208k translation pairs of 20–70 tokens, 513-token rows), on synthetic token ids.

    python benchmarks/packing.py
    python benchmarks/packing.py --sequences 20000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.packing import pack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=208_000)
    args = parser.parse_args()
    generator = random.Random(0)
    sequences = []
    for _ in range(args.sequences):
        length = generator.randint(20, 70)
        ids = [generator.randrange(32_000) for _ in range(length)]
        sequences.append((ids, [False] * (length // 2) + [True] * (length - length // 2)))  # prompt, then answer
    started = time.perf_counter()
    rows = pack(sequences, 513, pad_id=1)
    print(f"pack: {len(sequences):,} sequences into {len(rows):,} rows in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
