"""Every figure the prose quotes is the one its output prints.

The README's notebook table and the notebooks' markdown quote results of the committed run
(accuracies, timings, parameter counts). Each quote is registered below as a :class:`Quote`:
a pattern over the document that captures the figure, and a pattern over the **outputs** of
the notebook that prints it (stdout of its code cells, as committed). The test reads both and
fails when they disagree at the precision the prose writes (``40 %`` agrees with a printed
``0.40`` or ``0.403``; ``0.40`` does not agree with ``0.41``), so re-executing a notebook
(``make notebooks``) shows every sentence its new output contradicts.

A quote that no longer matches its document (reworded, deleted) fails too, and every number in
the README's notebook table must lie inside a registered quote, so the table cannot gain an
unchecked figure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

import pytest

from .conftest import REPO

NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Quote:
    """A figure quoted in ``doc`` (``says``) and printed by notebook ``source`` (``prints``).

    Both patterns are regular expressions over whitespace-collapsed text with the same named
    groups; ``says`` must match ``doc`` exactly once, ``prints`` the first match in the
    outputs. A numeric group agrees when the printed value rounds to the quoted one at the
    quoted number of decimals (the groups named in ``percent`` quote a printed fraction in
    per cent); any other group must be equal.
    """

    doc: str
    says: str
    source: str
    prints: str
    percent: tuple[str, ...] = ()


NB = {n: next((REPO / "notebooks").glob(f"{n}_*.ipynb")).relative_to(REPO).as_posix()
      for n in ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11")}
README = "README.md"
WALL = r"notebook wall time: (?P<wall>\d+) s"
#: Notebook 11's table of runs: SSA-GAN's and the word-attended G's rows (median [min-max]).
_CELL = r"([\d.]+) \[[\d.]+-[\d.]+\]"
BINDING = (r"^baseline 3 [\d.]+ \[[\d.-]+\] (?P<bwing>[\d.]+) \[[\d.-]+\] " + _CELL
           + r" (?P<bown>[\d.]+) \[[\d.-]+\] (?P<bleak>[\d.]+) \[(?P<bmin>[\d.]+)-"
           r"(?P<bmax>[\d.]+)\]$.*?^wordG\+swap 3 [\d.]+ \[[\d.-]+\] (?P<wing>[\d.]+) "
           r"\[[\d.-]+\] " + _CELL + r" (?P<own>[\d.]+) \[[\d.-]+\] (?P<leak>[\d.]+) "
           r"\[(?P<lmin>[\d.]+)-(?P<lmax>[\d.]+)\]$")
Z_VS_CAPTION = r"only z changes: (?P<z>[\d.]+); when only the caption changes: (?P<caption>[\d.]+)"

QUOTES = [
    # ---------------------------------------------------------------- README's notebook table
    Quote(README, r"draws the (?P<n>[\d,]+) birds", NB["01"], r"(?P<n>\d+) images, masks"),
    Quote(README, r"\| 01 \|.*?(?P<wall>\d+) s; draws", NB["01"], WALL),
    Quote(README, r"captions of (?P<lo>\d+) to (?P<hi>\d+) words, a sorted batch", NB["01"],
          r"min (?P<lo>\d+), max (?P<hi>\d+);"),
    Quote(README, r"pretraining \((?P<epochs>\d+) epochs at (?P<px>\d+) px\)", NB["02"],
          r"image_size=(?P<px>\d+) epochs=(?P<epochs>\d+)"),
    Quote(README, r"\| (?P<wall>\d+) s, pretraining (?P<train>\d+) s \|", NB["02"],
          r"trained in (?P<train>\d+) s.*?" + WALL),
    Quote(README, r"R-precision (?P<r>[\d.]+) % \(chance (?P<c>\d+) %\)", NB["02"],
          r"after training: R-precision (?P<r>[\d.]+) ± [\d.]+ % .*?chance (?P<c>\d+) %"),
    Quote(README, r"body colour (?P<body>\d+) % and wing colour (?P<wing>\d+) % of the time "
                  r"\((?P<ubody>\d+) and (?P<uwing>\d+) % untrained\)", NB["02"],
          r"body_color +[\d.]+ +(?P<ubody>[\d.]+) +(?P<body>[\d.]+) .*?"
          r"wing_color +[\d.]+ +(?P<uwing>[\d.]+) +(?P<wing>[\d.]+)",
          percent=("body", "wing", "ubody", "uwing")),
    Quote(README, r"\| 03 \|.*?\| (?P<wall>\d+) s \|", NB["03"], WALL),
    Quote(README, r"\| 04 \|.*?\| (?P<wall>\d+) s \|", NB["04"], WALL),
    Quote(README, r"mean mask (?P<inside>[\d.]+) inside the disc, (?P<outside>[\d.]+) outside",
          NB["04"], r"inside the disc: (?P<inside>[\d.]+), outside: (?P<outside>[\d.]+)"),
    Quote(README, r"SSA-GAN generator and discriminator at (?P<lo>\d+)-(?P<hi>\d+) px", NB["05"],
          r"resolution must be one of \((?P<lo>\d+), \d+, \d+, (?P<hi>\d+)\)"),
    Quote(README, r"\| 05 \|.*?\| (?P<wall>\d+) s \|", NB["05"], WALL),
    Quote(README, r"(?P<g>[\d,]+) parameters in G \(the official generator's count\) and "
                  r"(?P<d>[\d,]+) in D \(the official module's (?P<official>[\d,]+) less two "
                  r"shortcut convs its forward pass never uses\) at (?P<px>\d+) px",
          NB["05"], r"^(?P<px>\d+) 7 .*?\(2,\) (?P<g>[\d,]+) (?P<d>[\d,]+) .*?"
                    r"official module's (?P<official>[\d,]+)"),
    Quote(README, r"\| 06 \|.*?\| (?P<wall>\d+) s \|", NB["06"], WALL),
    Quote(README, r"median gradient norm at real pairs (?P<with>[\d.]+) with MA-GP, "
                  r"(?P<without>[\d.]+) without", NB["06"],
          r"MA-GP=False: median \|\|grad\|\| at real pairs (?P<without>[\d.]+), max [\d.]+\s"
          r"MA-GP=True : median \|\|grad\|\| at real pairs (?P<with>[\d.]+)"),
    Quote(README, r"\| (?P<wall>[\d,]+) s, training (?P<train>[\d,]+) s \(a rerun loads the "
                  r"checkpoint\) \|", NB["07"],
          r"training time (?P<train>\d+) s on .*?" + WALL),
    Quote(README, r"body colour (?P<body>\d+) % of images, mean (?P<mean>[\d.]+) over six "
                  r"attributes \(shuffled captions (?P<sbody>\d+) % and (?P<smean>[\d.]+), real "
                  r"(?P<rbody>\d+) % and (?P<rmean>[\d.]+)\), toy FID (?P<fid>[\d.]+)", NB["07"],
          r"toy FID (?P<fid>[\d.]+) \(real vs real.*?body_color +(?P<body>[\d.]+) +"
          r"(?P<rbody>[\d.]+) +(?P<sbody>[\d.]+) .*?mean +(?P<mean>[\d.]+) +(?P<rmean>[\d.]+) +"
          r"(?P<smean>[\d.]+)", percent=("body", "sbody", "rbody")),
    Quote(README, r"reference run ten times longer \((?P<epochs>\d+) epochs\) reaches body "
                  r"(?P<body>\d+) %, mean (?P<mean>[\d.]+), toy FID (?P<fid>[\d.]+)", NB["07"],
          r"^(?P<epochs>\d+) 11620 (?P<body>[\d.]+) (?P<mean>[\d.]+) [\d.]+ [\d.]+ "
          r"(?P<fid>[\d.]+)", percent=("body",)),
    Quote(README, r"own caption first in (?P<rank>\d+) % of test images \(text-blind "
                  r"(?P<blind>\d+) %\)", NB["07"],
          r"caption ranking of D on \d+ test images: (?P<rank>[\d.]+) \(text-blind "
          r"(?P<blind>[\d.]+)", percent=("rank", "blind")),
    Quote(README, r"\| 08 \|.*?\| (?P<wall>[\d,]+) s \|", NB["08"], WALL),
    Quote(README, r"after (?P<steps>[\d,]+) CPU steps SSA-GAN reads body colour (?P<s>[\d.]+) % "
                  r"vs DF-GAN's (?P<d>[\d.]+) % \(chance (?P<c>\d+) %, shuffled (?P<ss>[\d.]+) "
                  r"/ (?P<sd>[\d.]+) %\)", NB["08"],
          r"SSA-GAN: trained, (?P<steps>\d+) steps.*?body_color \(%\) +(?P<s>[\d.]+) ± [\d.]+ +"
          r"(?P<d>[\d.]+) ± [\d.]+ +[\d.]+ +(?P<ss>[\d.]+) / (?P<sd>[\d.]+) +(?P<c>[\d.]+)"),
    Quote(README, r"\| (?P<wall>\d+) s, training (?P<train>\d+) s \|", NB["09"],
          r"training time (?P<train>\d+) s on .*?" + WALL),
    Quote(README, r"kept (?P<kept>[\d.]+) of the facing, size and background; target accuracy of "
                  r"the edits (?P<target>[\d.]+), kept unnamed colours (?P<unnamed>[\d.]+)",
          NB["09"], r"target acc. \(edits\) (?P<target>[\d.]+)\s.*?kept facing/size/bg "
                    r"(?P<kept>[\d.]+)\skept unnamed colours (?P<unnamed>[\d.]+)"),
    Quote(README, r"reference run ten times longer \((?P<epochs>\d+) epochs\) keeps more \(unnamed "
                  r"colours (?P<unnamed>[\d.]+)\) but edits no better \((?P<target>[\d.]+)\)",
          NB["09"], r"^(?P<epochs>40) 5000 (?P<target>[\d.]+) (?P<unnamed>[\d.]+) "),
    Quote(README, r"\| 10 \|.*?\| (?P<wall>\d+) s with", NB["10"], WALL),
    Quote(README, r"\| 11 \|.*?\| (?P<wall>\d+) s with the run", NB["11"], WALL),
    Quote(README, r"keeps own at (?P<own>[\d.]+) \(SSA-GAN (?P<bown>[\d.]+)\) and lowers leak "
                  r"from (?P<bleak>[\d.]+) to (?P<leak>[\d.]+), every seed", NB["11"], BINDING),
    Quote(NB["11"], r"keeps SSA-GAN's \*own\* \((?P<own>[\d.]+) against (?P<bown>[\d.]+)\) and "
                    r"lowers \*leak\* from (?P<bleak>[\d.]+) to (?P<leak>[\d.]+), in every seed "
                    r"below every SSA-GAN seed \((?P<lmin>[\d.]+)-(?P<lmax>[\d.]+) against "
                    r"(?P<bmin>[\d.]+)-(?P<bmax>[\d.]+)\)", NB["11"], BINDING),
    Quote(NB["11"], r"the wings lose colour accuracy \((?P<wing>[\d.]+) against "
                    r"(?P<bwing>[\d.]+)\)", NB["11"], BINDING),
    Quote(README, r"\(the reference model: (?P<caption>[\d.]+) and (?P<seed>[\d.]+)\); the "
                  r"reference model's (?P<px>\d+) px mask finds the bird \(IoU (?P<iou>[\d.]+) "
                  r"against a centred disc's (?P<disc>[\d.]+)\)", NB["10"],
          r"^model 4 px 8 px (?P<px>\d+) px 32 px disc$.*?"
          r"^reference [\d.]+ [\d.]+ (?P<iou>[\d.]+) [\d.]+ (?P<disc>[\d.]+)$.*?^reference: mean "
          r"\|change\| when only the caption changes: (?P<caption>[\d.]+); when only the seed "
          r"changes: (?P<seed>[\d.]+)"),
    Quote(README, r"toy FID [\d.]+ \(lowest at epoch (?P<epoch>\d+): (?P<fid>[\d.]+)\)", NB["07"],
          r"^(?P<epoch>35) 5810 [\d.]+ [\d.]+ [\d.]+ [\d.]+ (?P<fid>[\d.]+)$"),
    Quote(README, r"mean pixel change (?P<caption>[\d.]+) when the caption changes, "
                  r"(?P<seed>[\d.]+) when the seed does", NB["10"],
          r"only the caption changes: (?P<caption>[\d.]+); when only the seed changes: "
          r"(?P<seed>[\d.]+)"),
    Quote(README, r"CPU times were measured by `make notebooks` on (?P<machine>[^;]+?);", NB["07"],
          r"notebook wall time: \d+ s on (?P<machine>.+?), \d+ threads$"),
    # ---------------------------------------------------------------- the notebooks' markdown
    Quote(NB["01"], r"captions of (?P<lo>\d+) to (?P<hi>\d+) words \(the printed", NB["01"],
          r"min (?P<lo>\d+), max (?P<hi>\d+);"),
    Quote(NB["02"], r"R-precision at chance \((?P<c>\d+) %\) before training", NB["02"],
          r"before training: R-precision (?P<c>[\d.]+) ±"),
    Quote(NB["04"], r"mean mask value (?P<inside>[\d.]+) inside the disc and (?P<outside>[\d.]+) "
                    r"outside in the committed run", NB["04"],
          r"inside the disc: (?P<inside>[\d.]+), outside: (?P<outside>[\d.]+)"),
    Quote(NB["06"], r"with MA-GP it levels off around \$(?P<v>[\d.]+)\$", NB["06"],
          r"MA-GP=True : median \|\|grad\|\| at real pairs [\d.]+ at init, (?P<v>[\d.]+) after"),
    Quote(NB["07"], r"the last mask covers (?P<cover>\d+) % of the frame", NB["07"],
          r"above 0.5 on (?P<cover>\d+) % of the frame"),
    Quote(NB["07"], r"moves by (?P<z>[\d.]+) with \$z\$ and by (?P<caption>[\d.]+) with the "
                    r"caption", NB["07"], Z_VS_CAPTION),
    Quote(NB["07"], r"than with the caption \((?P<z>[\d.]+) against (?P<caption>[\d.]+)\)",
          NB["07"], Z_VS_CAPTION),
    Quote(NB["08"], r"\(32 px: (?P<s32>[\d.]+) against the disc's (?P<disc>[\d.]+) and the "
                    r"frame's (?P<frame>[\d.]+)\); the 4, 8 and 16 px stages score (?P<s4>[\d.]+), "
                    r"(?P<s8>[\d.]+) and (?P<s16>[\d.]+)", NB["08"],
          r"mask IoU, 4 px (?P<s4>[\d.]+) .*?8 px (?P<s8>[\d.]+) .*?16 px (?P<s16>[\d.]+) .*?"
          r"32 px (?P<s32>[\d.]+) .*?IoU centred disc (?P<disc>[\d.]+) .*?IoU whole frame "
          r"(?P<frame>[\d.]+)"),
    Quote(NB["09"], r"goes from (?P<t4>[\d.]+) \(epoch 4\) to (?P<t20>[\d.]+) \(epoch 20\) "
                    r"and back to (?P<t40>[\d.]+) \(epoch 40\)", NB["09"],
          r"^4 500 (?P<t4>[\d.]+) .*?^20 2500 (?P<t20>[\d.]+) .*?^40 5000 (?P<t40>[\d.]+) "),
    Quote(NB["09"], r"unnamed colours (?P<u4>[\d.]+) to (?P<u40>[\d.]+), mask IoU (?P<m4>[\d.]+) "
                    r"to (?P<m40>[\d.]+), bird change (?P<b4>[\d.]+) to (?P<b40>[\d.]+)\)",
          NB["09"],
          r"^4 500 [\d.]+ (?P<u4>[\d.]+) [\d.]+ (?P<m4>[\d.]+) (?P<b4>[\d.]+)$.*?"
          r"^40 5000 [\d.]+ (?P<u40>[\d.]+) [\d.]+ (?P<m40>[\d.]+) (?P<b40>[\d.]+)$"),
    Quote(NB["09"], r"moves its output by only (?P<effect>[\d.]+) of 255 at epoch 40, against a "
                    r"bird change of (?P<b40>[\d.]+)\.", NB["09"],
          r"^40 5000 [\d.]+ [\d.]+ [\d.]+ [\d.]+ (?P<b40>[\d.]+)$.*?\(0-255\): \[.*, "
          r"(?P<effect>[\d.]+)\]$"),
    Quote(NB["10"], r"for both models: (?P<caption>[\d.]+) against (?P<seed>[\d.]+) for yours, "
                    r"(?P<rcaption>[\d.]+) against (?P<rseed>[\d.]+) for the reference", NB["10"],
          r"^yours: mean \|change\| when only the caption changes: (?P<caption>[\d.]+); when only "
          r"the seed changes: (?P<seed>[\d.]+) .*?^reference: mean \|change\| when only the "
          r"caption changes: (?P<rcaption>[\d.]+); when only the seed changes: (?P<rseed>[\d.]+)"),
    Quote(NB["10"], r"its best, (?P<px>\d+) px, scores (?P<iou>[\d.]+) against the disc's "
                    r"(?P<disc>[\d.]+)\),.*?the reference model's \d+ px mask does find the "
                    r"bird \((?P<riou>[\d.]+) against (?P<rdisc>[\d.]+)\)", NB["10"],
          r"^model 4 px 8 px (?P<px>\d+) px 32 px disc$\s"
          r"^yours [\d.]+ [\d.]+ (?P<iou>[\d.]+) [\d.]+ (?P<disc>[\d.]+)$\s"
          r"^reference [\d.]+ [\d.]+ (?P<riou>[\d.]+) [\d.]+ (?P<rdisc>[\d.]+)$"),
    Quote(NB["07"], r"mean (?P<m35>[\d.]+) at epoch 35, (?P<m70>[\d.]+) at epoch 70\), but toy FID "
                    r"is lowest at epoch 35 \((?P<f35>[\d.]+)\) and rises to (?P<f70>[\d.]+) by "
                    r"epoch 70", NB["07"],
          r"^35 5810 [\d.]+ (?P<m35>[\d.]+) [\d.]+ [\d.]+ (?P<f35>[\d.]+)$.*?"
          r"^70 11620 [\d.]+ (?P<m70>[\d.]+) [\d.]+ [\d.]+ (?P<f70>[\d.]+)$"),
    Quote(NB["07"], r"asking for a green body gives a green body in (?P<f>\d+) % of the rows, but "
                    r"the oracle's reading of another part changes in every row \(leak "
                    r"(?P<l>[\d.]+)\), and white wings change the other parts in (?P<lw>\d+) %",
          NB["07"], r"^this run body -> green (?P<f>[\d.]+) [\d.]+ (?P<l>[\d.]+)$\s"
                    r"^this run wing -> white [\d.]+ [\d.]+ (?P<lw>[\d.]+)$",
          percent=("f", "lw")),
    Quote(NB["07"], r"a red crown in (?P<c>\d+) %\) and leaks less \((?P<lw>[\d.]+) and "
                    r"(?P<lc>[\d.]+)\), yet asked for a green body it draws a blue bird on sand in "
                    r"every row \(followed (?P<fb>[\d.]+)\)", NB["07"],
          r"^reference body -> green (?P<fb>[\d.]+) [\d.]+ [\d.]+$\s"
          r"^reference wing -> white [\d.]+ [\d.]+ (?P<lw>[\d.]+)$\s"
          r"^reference crown -> red (?P<c>[\d.]+) [\d.]+ (?P<lc>[\d.]+)$", percent=("c",)),
    Quote(NB["08"], r"real-vs-real floor of (?P<floor>\d+)\)", NB["08"],
          r"toy FID \(floor: real\) [\d.]+ [\d.]+ (?P<floor>[\d.]+)"),
]


def _collapse(text: str) -> str:
    return " ".join(text.split())


@cache
def prose(path: str) -> str:
    """The text of a markdown file, or a notebook's markdown cells, whitespace collapsed."""
    text = (REPO / path).read_text(encoding="utf-8")
    if path.endswith(".ipynb"):
        text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"]
                         if c["cell_type"] == "markdown")
    return _collapse(text)


@cache
def outputs(path: str) -> str:
    """What a notebook's code cells printed (stdout), each line's whitespace collapsed."""
    cells = json.loads((REPO / path).read_text(encoding="utf-8"))["cells"]
    text = "".join("".join(o["text"]) for c in cells if c["cell_type"] == "code"
                   for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")
    return "\n".join(_collapse(line) for line in text.splitlines())


def _agrees(quoted: str, printed: str, scale: float = 1.0) -> bool:
    if not NUMBER.fullmatch(quoted) or not NUMBER.fullmatch(printed):
        return quoted == printed
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    value = float(printed.replace(",", "")) * scale
    return abs(float(quoted.replace(",", "")) - value) <= 0.5 * 10 ** -decimals + 1e-9


def check(quote: Quote, doc_text: str | None = None) -> list[str]:
    """What is wrong with one quote: empty when it matches once and agrees with its source
    (``doc_text``: the document's text instead of the committed file's)."""
    found = list(re.finditer(quote.says, prose(quote.doc) if doc_text is None else doc_text))
    if len(found) != 1:
        return [f"{quote.doc}: /{quote.says}/ matches {len(found)} times (want 1)"]
    printed = re.search(quote.prints, outputs(quote.source), re.S | re.M)
    if printed is None:
        return [f"{quote.source}: its outputs never print /{quote.prints}/"]
    said = found[0].groupdict()
    return [f"{quote.doc} says {name} = {value!r} ({found[0].group(0)!r}), but {quote.source} "
            f"prints {printed.group(name)!r}" + (" (a fraction)" if name in quote.percent else "")
            for name, value in said.items()
            if not _agrees(value, printed.group(name), 100.0 if name in quote.percent else 1.0)]


@pytest.mark.parametrize("quote", QUOTES, ids=lambda q: f"{q.doc.split('/')[-1]}:{q.says[:40]}")
def test_quoted_figure_is_the_printed_one(quote: Quote):
    assert check(quote) == []


def _table_rows() -> list[str]:
    text = (REPO / README).read_text(encoding="utf-8")
    section = text.split("## The notebooks", 1)[1].split("\n\n", 2)[1]
    return [row for row in section.splitlines() if re.match(r"\| \d\d \|", row)]


def test_every_figure_of_the_readme_table_is_a_registered_quote():
    text = prose(README)
    covered = [m.span(g) for q in QUOTES if q.doc == README
               for m in re.finditer(q.says, text) for g in m.groupdict()]
    names = r"notebooks? \d\d(?:(?:,| and) \d\d)*|\b[A-Za-z][\w./-]*\d[\w./-]*|\b\d-D\b"
    covered += [m.span() for m in re.finditer(names, text)]  # notebook 07, t2ilib, 2-D: names
    rows = _table_rows()
    assert len(rows) == 12, "the README's notebook table should have rows 00-11"
    unchecked = []
    for row in rows:
        start = text.index(_collapse(row))
        after_link = start + _collapse(row).index(") |") + 3  # the number and the link
        for m in NUMBER.finditer(text, after_link, start + len(_collapse(row))):
            if not any(a <= m.start() and m.end() <= b for a, b in covered):
                unchecked.append(f"{row[:6]}: {m.group(0)!r}")
    assert unchecked == [], f"figures of the README's table with no Quote: {unchecked}"


def test_a_changed_figure_fails():
    """The check has teeth: the README with one figure changed disagrees with its output."""
    quote = next(q for q in QUOTES if "reference run ten times" in q.says)
    assert check(quote) == []
    said = re.search(quote.says, prose(README))
    changed = prose(README)[:said.start("fid")] + "99.9" + prose(README)[said.end("fid"):]
    (problem,) = check(quote, changed)
    assert "fid = '99.9'" in problem
