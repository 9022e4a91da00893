"""Regenerate the ImageNet-R / ImageNet-A 200-class subset files from the committed lists.

    python tasks/imagenet/make_subsets.py [--check]

Inputs (data, committed): ``wnids.txt`` (the 1000 ImageNet-1k WordNet ids in label order, which is
sorted order), ``classnames.txt`` (OpenAI's 1000 curated names, same order), ``r_wnids.txt`` and
``a_wnids.txt`` (the 200 WordNet ids of ImageNet-R / ImageNet-A, sorted). Outputs: ``{r,a}_indices.txt``
(the 200 indices into the 1000 classes, ascending) and ``{r,a}_classnames.txt`` (the names at those
indices: the class names of an image folder whose 200 class folders are the WordNet ids, since their
sorted order is the ascending index order). ``--check`` only compares and exits 1 on a difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def lines(name: str) -> list[str]:
    return (HERE / name).read_text(encoding="utf-8").splitlines()


def outputs() -> dict[str, str]:
    wnids, names = lines("wnids.txt"), lines("classnames.txt")
    assert len(wnids) == len(names) == 1000 and wnids == sorted(wnids)
    position = {w: i for i, w in enumerate(wnids)}
    files = {}
    for subset in ("r", "a"):
        indices = sorted(position[w] for w in lines(f"{subset}_wnids.txt"))
        assert len(indices) == len(set(indices)) == 200
        files[f"{subset}_indices.txt"] = "".join(f"{i}\n" for i in indices)
        files[f"{subset}_classnames.txt"] = "".join(f"{names[i]}\n" for i in indices)
    return files


def main(argv: list[str]) -> int:
    stale = []
    for name, text in outputs().items():
        path = HERE / name
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale: " + ", ".join(stale) + " (run python tasks/imagenet/make_subsets.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
