"""Reference outputs of notebook 01's exercises: ``tokenize`` and ``bbox_crop_box``."""

from __future__ import annotations

import random

from t2ilib.data.cub import bbox_crop_box
from t2ilib.text.vocab import tokenize

#: Characters of the random captions: ASCII letters, digits and punctuation, accented and
#: non-Latin letters, CUB's replacement character.
ALPHABET = "abzAQZ0189 _-'.,!?\t\n\u00e9\u00fc\u00df\u00c9\u65e5\ufffd"


def build() -> dict:
    rng = random.Random(1)
    texts = ["\ufffd\ufffd", "a\ufffd\ufffdb", "\ufffda\ufffd", "A_B c-D", "\u00c9T\u00c9 bird",
             "na\u00efve caf\u00e9s", "x\u00e9\u00e9", "\u00e9"]
    texts += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30)))
              for _ in range(300)]

    rng = random.Random(2)
    boxes, sizes = [], []
    for _ in range(500):
        size = (rng.randint(1, 500), rng.randint(1, 500))
        x, y = rng.randint(0, size[0] - 1), rng.randint(0, size[1] - 1)
        boxes.append((float(x), float(y), float(rng.randint(1, size[0] - x)),
                      float(rng.randint(1, size[1] - y))))
        sizes.append(size)
    boxes.append((10.5, 20.25, 33.5, 7.0))  # fractional boxes, as CUB's file holds
    sizes.append((100, 80))
    # likely mistakes, as the correct crop of another image size: the clipping with width
    # and height swapped, the right edge clipped at width - 1 (an inclusive edge)
    mistakes = {
        "the right edge is clipped at the height and the bottom at the width (swapped?)":
            [bbox_crop_box(b, s[1], s[0]) for b, s in zip(boxes, sizes)],
        "the right edge is clipped at width - 1: the crop's right and bottom are exclusive "
        "(PIL's crop box), clip them at width and height":
            [bbox_crop_box(b, s[0] - 1, s[1]) for b, s in zip(boxes, sizes)]}
    return {
        "nb01_tokenize": {"inputs": {"texts": texts},
                          "outputs": {"tokens": [tokenize(t) for t in texts]}},
        "nb01_bbox_crop_box": {
            "inputs": {"boxes": boxes, "sizes": sizes},
            "outputs": {"crops": [bbox_crop_box(b, *s) for b, s in zip(boxes, sizes)],
                        "mistakes": mistakes}},
    }
