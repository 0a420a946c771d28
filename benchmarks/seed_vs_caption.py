"""How much an SSA-GAN picture moves with the seed and with the caption (notebook 10, section 4).

The same measure as notebook 10: four captions that differ in their colour words, four noise
vectors from one seed; the mean absolute pixel change (range [-1, 1]) when only the caption
changes and when only the noise does. Prints one JSON line per checkpoint, to compare settings
side by side (e.g. notebook 07's run against one trained with the mode-seeking term)::

    python benchmarks/seed_vs_caption.py data/runs/nb07_toybirds_32px/checkpoint.pt \\
        runs/ssagan_ms1/checkpoint.pt

``--controlled`` adds notebook 07's controlled grid (one colour word changed per column, the
same noise in every column; :mod:`t2ilib.ssagan.controlled`) as the ToyBirds oracle reads it:
per changed word, the shares of rows that followed it, that moved, and that leaked to other parts.
"""

from __future__ import annotations

import argparse
import json

from t2ilib.ssagan.controlled import controlled_grid, seed_vs_caption
from t2ilib.ssagan.sampling import load_generator


def measure(checkpoint: str, n: int = 4, seed: int = 0) -> dict[str, float]:
    """``{"by_caption", "by_seed"}`` for ``checkpoint`` (G's EMA copy when it has one)."""
    g, text_encoder, vocab, _ = load_generator(checkpoint, "cpu")
    return seed_vs_caption(g, text_encoder, vocab, n=n, seed=seed)


def controlled(checkpoint: str, n_rows: int = 64, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{changed word: {"followed", "moved", "leak"}}`` of the controlled grid."""
    from t2ilib.data.toybirds import ensure_toybirds
    from t2ilib.metrics.toy_oracle_train import load_or_train_oracle

    oracle = load_or_train_oracle(ensure_toybirds())[0]
    grid = controlled_grid(*load_generator(checkpoint, "cpu")[:3], oracle, n_rows=n_rows,
                           seed=seed)
    return {f"{e['part'].split('_')[0]}->{e['to']}": {k: round(e[k], 3) for k in
                                                      ("followed", "moved", "leak")}
            for e in grid.effects()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("-n", type=int, default=4, help="noise vectors per caption")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--controlled", action="store_true",
                        help="also the controlled grid's figures (64 noise rows, the oracle)")
    args = parser.parse_args()
    for checkpoint in args.checkpoints:
        row = {"checkpoint": checkpoint, **{k: round(v, 3) for k, v in
                                            measure(checkpoint, args.n, args.seed).items()}}
        if args.controlled:
            row["controlled"] = controlled(checkpoint, seed=args.seed)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
