"""Which point the operating-point fit chooses with the old and the new candidate rules, and how it holds on
the large held-out sets.

    python tools/study/fit_rules.py ROOT OUTDIR NAME=MODEL [NAME=MODEL ...]

Sweeps the default fitting set (`edgeseg.operating.fitting_set`: 2,000 images with defects + 2,000 without,
half uniform and half Gaussian noise) over THRESHOLDS × every rule of `EXTENDED`, and chooses under two
candidate sets — `before` (no growing or growing to 0.2, ≥ 32 px: the earlier candidates) and `now`
(`edgeseg.operating.CANDIDATE_RULES`) — in two ways:

* `mixed`: as `edgeseg train` does, the budget held on each noise kind;
* `gauss`: on the Gaussian half only, as a line with Gaussian noise fitting on its own images would.

Each chosen point is scored on ROOT's large sets (`seed` + `good`, `gauss` + `goodg`, `vary`; false blobs
per image over a set and its good twin together). Probabilities are cached in OUTDIR/NAME/ (float16; the
same files `tools/study/blob_rules.py` uses).
"""
import sys
from pathlib import Path

import numpy as np

from blob_rules import cached_probs, models  # tools/study/blob_rules.py: the same arguments and cache files

from edgeseg import operating
from edgeseg.data.dataset import load_dataset
from edgeseg.evaluate import predict_probs
from edgeseg.metrics import GroundTruth, score
from edgeseg.postprocess import MaskRule
from edgeseg.runners.base import load_runner

EXTENDED = tuple(MaskRule(g, a) for g in (None, 0.6, 0.55, 0.5, 0.45, 0.4, 0.2) for a in (32, 48, 64, 96, 128))
CANDIDATES = {"before": (MaskRule(None, 32), MaskRule(0.2, 32)), "now": operating.CANDIDATE_RULES}
BUDGETS = {"mixed": [0.0025, 0.005], "gauss": [0.001, 0.0025, 0.005]}
SETS = {"seed": "good", "gauss": "goodg", "vary": None}
CHUNK = 250


def tallies(model: str, cache: Path):
    """The extended sweep over the whole fitting set and over its Gaussian half."""
    fs = operating.fitting_set(operating.DEFAULT_SEED, operating.DEFAULT_COUNT)
    mixed, gauss = operating.Tally(EXTENDED), operating.Tally(EXTENDED)
    with load_runner(model) as runner:
        for kind, images, masks, groups in (("fitd", fs.defect, fs.masks, fs.defect_groups),
                                            ("fitg", fs.good, None, fs.good_groups)):
            for s in range(0, len(images), CHUNK):
                f = cache / f"{kind}{s}.npy"
                if not f.exists():
                    p = predict_probs(runner, images[s:s + CHUNK])
                    np.save(f, (p[..., 0] if p.ndim == 4 else p).astype(np.float16))
                p = np.load(f).astype(np.float32)
                m = None if masks is None else masks[s:s + CHUNK]
                g = groups[s:s + CHUNK]
                mixed.add(p, m, g)
                if set(g) == {"gaussian"}:  # the second half of each part (CHUNK divides the count / 2)
                    gauss.add(p, m)
    return {"mixed": mixed.points(), "gauss": gauss.points()}


def held_out(model: str, cache: Path, root: Path):
    return {name: (cached_probs(model, cache, name, ds.images), GroundTruth.from_masks(ds.masks))
            for name, ds in ((n, load_dataset(root / n)) for s, g in SETS.items() for n in (s, g) if n)}


def main() -> None:
    for root, name, model, cache in models(sys.argv):
        points, sets = tallies(model, cache), held_out(model, cache, root)
        for how, budgets in BUDGETS.items():
            for cand, rules in CANDIDATES.items():
                for b in budgets:
                    p, within = operating.choose([q for q in points[how] if q.rule in rules], b)
                    cells = []
                    for s, g in SETS.items():
                        if how == "gauss" and s != "gauss":
                            continue
                        (ps, ts) = sets[s]
                        m = score(p.rule.apply(ps, p.threshold), ts, p.threshold)
                        fp, n = m["fp_blobs"], len(ps)
                        if g:
                            pg, tg = sets[g]
                            fp, n = fp + score(p.rule.apply(pg, p.threshold), tg, p.threshold)["fp_blobs"], n + len(pg)
                        cells.append(f"{s} {m['dice']:.3f}/{m['defect_recall']:.3f}/{fp / n:.4f}")
                    grow = "none" if p.rule.grow is None else f"{p.rule.grow:g}"
                    print(f"{name} {how} {cand} ≤{b}: {p.threshold:.2f}, grow {grow}, ≥{p.rule.min_area} px "
                          f"(fit {p.defect_recall:.3f}/{p.dice:.3f}/{p.fp_blobs_per_image:.4f}"
                          f"{'' if within else ', over budget'}) → " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
