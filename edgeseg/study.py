"""``edgeseg study SPEC``: the seed's questions answered as sweeps, from a small TOML file.

A spec names a grid over training settings — network × loss (or loss schedule) × data recipe × training seed
— plus the precisions to deploy each trained network in and the held-out sets every arm is scored on::

    name = "losses"
    [train]                      # TrainConfig fields every arm shares
    epochs = 40
    [grid]                       # TrainConfig fields to sweep; every combination is one arm
    loss = ["bce", "dice", "bce+dice", "bce@0,bce+dice@5"]
    seed = [0, 1, 2]
    [[sets]]                     # held-out sets: a generator preset + overrides, with seeds training never uses
    name = "seed"
    preset = "seed"
    count = 200
    seed = 1001
    [deploy]
    precisions = ["fp32", "int8"]   # fp32 = the Keras model; fp16/int8 go through ONNX like `edgeseg quantize`
    classical = true                # the classical detector on the same sets, for reference
    bench = false                   # time each arm's FP32 ONNX at batch 1 and 32 (the speed/accuracy frontier)

Every arm lives in ``OUT/arms/<slug>/``: training resumes from its checkpoint after an interruption, an arm
with a ``result.json`` is skipped, and the held-out sets are generated once under ``OUT/data/``. The summary
(``report.json``, ``report.md``, ``report.png``) groups arms that differ only by their training seed and
gives each metric's mean and spread over seeds, so a difference between recipes can be told from seed noise.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.artifacts import read_json, write_figure, write_json
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRECISIONS = ("fp32", "fp16", "int8")
#: The one setting that is not a training option: train the arm as that many worker processes over loopback
#: (``--strategy multiworker``, :mod:`edgeseg.loopback`); 0 (the default) trains in this process.
LOOPBACK = "loopback_workers"
_SET_KEYS = {"name", "preset", "count", "seed"}


@dataclass(frozen=True)
class HeldOut:
    """A held-out set: ``preset`` with generator overrides (``noise``, ``shape``, ``good_fraction``, …)."""

    name: str
    preset: str
    count: int
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self):
        from edgeseg.data.synth import SynthConfig, preset

        base = preset(self.preset).to_dict()
        unknown = set(self.overrides) - set(base)
        if unknown:
            raise EdgesegError(f"set {self.name!r}: unknown generator setting(s) {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(sorted(base))}")
        return SynthConfig.from_dict({**base, **self.overrides})


@dataclass(frozen=True)
class Spec:
    name: str
    train: dict[str, Any]
    grid: dict[str, list[Any]]
    sets: tuple[HeldOut, ...]
    precisions: tuple[str, ...] = ("fp32",)
    classical: bool = True
    bench: bool = False


@dataclass(frozen=True)
class Arm:
    """One training run of the grid: its settings (only the swept ones) and its folder name."""

    settings: dict[str, Any]

    @property
    def slug(self) -> str:
        parts = [f"{k}={_text(v)}" for k, v in self.settings.items()]
        return ",".join(parts).replace("/", "_").replace(" ", "") or "base"

    @property
    def group(self) -> str:
        """The arm without its training seed: arms of one group differ by seed only."""
        return Arm({k: v for k, v in self.settings.items() if k != "seed"}).slug


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ";".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec; every mistake is one line naming the key."""
    from edgeseg.train import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"study spec not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EdgesegError(f"{path} is not valid TOML: {e}") from None
    unknown = set(raw) - {"name", "train", "grid", "sets", "deploy"}
    if unknown:
        raise EdgesegError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} (name, train, grid, sets, deploy)")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} | {LOOPBACK}
    train, grid = dict(raw.get("train", {})), dict(raw.get("grid", {}))
    for section, keys in (("train", train), ("grid", grid)):
        bad = set(keys) - fields
        if bad:
            raise EdgesegError(f"{path}: [{section}] has unknown training setting(s) {', '.join(sorted(bad))}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise EdgesegError(f"{path}: [grid] {key} must be a non-empty list, got {values!r}")
    sets = []
    for entry in raw.get("sets", []):
        missing = _SET_KEYS - set(entry)
        if missing:
            raise EdgesegError(f"{path}: a [[sets]] entry lacks {', '.join(sorted(missing))}")
        s = HeldOut(str(entry["name"]), str(entry["preset"]), int(entry["count"]), int(entry["seed"]),
                    {k: v for k, v in entry.items() if k not in _SET_KEYS})
        s.config()  # unknown or impossible generator settings fail here, before any training
        if s.count < 1:
            raise EdgesegError(f"{path}: set {s.name!r} needs count >= 1")
        sets.append(s)
    if not sets:
        raise EdgesegError(f"{path}: give at least one [[sets]] entry (the held-out data every arm is scored on)")
    if len({s.name for s in sets}) != len(sets):
        raise EdgesegError(f"{path}: held-out set names must be unique")
    deploy = dict(raw.get("deploy", {}))
    precisions = tuple(deploy.pop("precisions", ["fp32"]))
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise EdgesegError(f"{path}: [deploy] precisions must be among {', '.join(PRECISIONS)}, got {list(precisions)}")
    classical, bench = bool(deploy.pop("classical", True)), bool(deploy.pop("bench", False))
    if deploy:
        raise EdgesegError(f"{path}: [deploy] has unknown key(s) {', '.join(sorted(deploy))}")
    spec = Spec(str(raw.get("name", path.stem)), train, grid, tuple(sets), precisions, classical, bench)
    # A bad combination (an unknown loss or network) fails before the first arm trains. The arm with the
    # most devices goes first: splitting the CPU into devices must happen before TensorFlow starts, so a
    # spec with several devices must be the first thing a process loads (the CLI loads one spec).
    for arm in sorted(arms(spec), key=lambda a: -int(a.settings.get("devices", train.get("devices", 1)))):
        config(spec, arm)
    return spec


def arms(spec: Spec) -> list[Arm]:
    keys = list(spec.grid)
    return [Arm(dict(zip(keys, values))) for values in itertools.product(*(spec.grid[k] for k in keys))]


def config(spec: Spec, arm: Arm):
    from edgeseg.train import TrainConfig, check

    settings = {**spec.train, **arm.settings}
    loopback = settings.pop(LOOPBACK, 0)
    try:
        cfg = TrainConfig(**settings)
    except TypeError as e:
        raise EdgesegError(f"arm {arm.slug}: {e}") from None
    if loopback:
        if not isinstance(loopback, int) or loopback < 1 or cfg.batch_size % (loopback * cfg.devices):
            raise EdgesegError(f"arm {arm.slug}: {LOOPBACK} must be a whole number >= 1 that splits --batch-size "
                               f"{cfg.batch_size} evenly (with {cfg.devices} device(s) each), got {loopback!r}")
        # The workers check the cluster themselves; here the rest of the options, on one process's terms.
        check(dataclasses.replace(cfg, strategy="auto", devices=1))
        return dataclasses.replace(cfg, strategy="multiworker")
    check(cfg)
    return cfg


# -- running ----------------------------------------------------------------------------------------------
def held_out(spec: Spec, out: Path, progress: Progress = silent) -> dict[str, Path]:
    """The held-out sets under ``out/data/``, generated once (a set whose manifest matches is reused)."""
    from edgeseg.data.dataset import write_dataset

    paths = {}
    for s in spec.sets:
        path = out / "data" / s.name
        cfg = s.config()
        manifest = path / "manifest.json"
        if manifest.is_file():
            made = read_json(manifest).get("config", {})
            if made.get("generator") == cfg.to_dict() and made.get("seed") == s.seed and made.get("count") == s.count:
                paths[s.name] = path
                continue
        progress(0, s.count, f"generating {s.name}")
        paths[s.name] = write_dataset(path, cfg, s.count, s.seed)
    return paths


def _score(model: Path | str, sets: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Dice, recall and false blobs of ``model`` at its own operating point on every held-out set."""
    from edgeseg.data.dataset import load_dataset
    from edgeseg.evaluate import evaluate, model_mask_rule, model_threshold
    from edgeseg.runners import load_runner

    threshold, _ = model_threshold(model)
    rule = model_mask_rule(model)
    scores = {}
    with load_runner(model) as runner:
        for name, path in sets.items():
            result = evaluate(runner, load_dataset(path), {"own": threshold}, rule=rule)
            m = result["thresholds"]["own"]
            has_defects = result["oracle_threshold"] is not None  # Dice means nothing on a defect-free set
            scores[name] = {"dice": m["dice"] if has_defects else None, "defect_recall": m["defect_recall"],
                            "fp_blobs_per_image": m["fp_blobs_per_image"], "n_defects": m["n_defects"],
                            "defects_found": m["defects_found"]}
    return scores


def _onnx(arm_dir: Path, image_size: int) -> Path:
    """The arm's FP32 ONNX model, exported on first use."""
    from edgeseg.export.onnx import export_onnx

    onnx_path = arm_dir / "model.onnx"
    if not onnx_path.is_file():
        export_onnx(arm_dir / "model.keras", onnx_path, image_size=image_size)
    return onnx_path


def _deploy(arm_dir: Path, precision: str, image_size: int) -> Path:
    """The arm's model in ``precision``: the Keras model for fp32, else its ONNX conversion."""
    from edgeseg.export.precision import to_fp16, to_int8

    if precision == "fp32":
        return arm_dir / "model.keras"
    target = arm_dir / f"model.{precision}.onnx"
    if not target.is_file():
        (to_fp16 if precision == "fp16" else to_int8)(_onnx(arm_dir, image_size), target)
    return target


def run_arm(spec: Spec, arm: Arm, out: Path, sets: dict[str, Path], progress: Progress = silent) -> dict[str, Any]:
    """Train (or resume) one arm, deploy it in every precision, score it; ``result.json`` marks it done."""
    from edgeseg.train import CHECKPOINT, train

    arm_dir = out / "arms" / arm.slug
    result_path = arm_dir / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    cfg = config(spec, arm)
    if not (arm_dir / "model.keras.json").is_file():
        resume = (arm_dir / CHECKPOINT / "state.json").is_file()
        workers = {**spec.train, **arm.settings}.get(LOOPBACK, 0)
        if workers:
            from edgeseg import loopback

            loopback.train(cfg, arm_dir, workers, resume=resume, progress=progress)
        else:
            train(cfg, arm_dir, resume=resume, progress=progress)
    manifest = read_json(arm_dir / "model.keras.json")
    size = spec.sets[0].config().image_size
    scores = {p: _score(_deploy(arm_dir, p, size), sets) for p in spec.precisions}
    result = {"arm": arm.slug, "group": arm.group, "settings": arm.settings, "config": cfg.to_dict(),
              "model": manifest.get("model", {}), "training": manifest.get("training", {}), "scores": scores}
    if spec.bench:
        result["speed"] = _speed(arm_dir, size)
    write_json(result_path, result)
    return result


def _speed(arm_dir: Path, size: int) -> dict[str, float]:
    """images/s of the arm's FP32 ONNX model at batch 1 and 32 (short: a frontier, not a benchmark)."""
    from edgeseg.bench.harness import Timing, sweep

    rows = sweep([_onnx(arm_dir, size)], (1, 32), Timing(0.5, 1.5, 3))
    return {f"batch_{r['batch_size']}": r["images_per_s"] for r in rows}


def run_study(spec: Spec, out: str | Path, progress: Progress = silent,
              command: list[str] | None = None) -> dict[str, Any]:
    """Run every arm not yet done, then write the summary (see the module docstring); returns the report,
    which records ``command`` (the command line that ran it) when given."""
    out = Path(out)
    sets = held_out(spec, out, progress)
    todo = arms(spec)
    results = []
    for i, arm in enumerate(todo):
        def sub(done: int, total: int | None, message: str = "", _i=i, _arm=arm) -> None:
            progress(_i, len(todo), f"{_arm.slug}: {message}")

        results.append(run_arm(spec, arm, out, sets, sub))
        progress(i + 1, len(todo), f"{arm.slug}: done")
    classical = None
    if spec.classical:
        classical_path = out / "classical.json"
        if classical_path.is_file() and set(read_json(classical_path)) == set(sets):
            classical = read_json(classical_path)
        else:
            classical = _score("classical", sets)
            write_json(classical_path, classical)
    report = summarize(spec, results, classical)
    if command:
        report["command"] = list(command)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "report.png")
    return report


# -- the summary ------------------------------------------------------------------------------------------
def _spread(values: list[float | None]) -> dict[str, Any]:
    xs = [v for v in values if v is not None]
    if not xs:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs),
            "min": min(xs), "max": max(xs)}


def summarize(spec: Spec, results: list[dict[str, Any]], classical: dict | None = None) -> dict[str, Any]:
    """Per group (arms differing by training seed only) × precision × set: mean and spread of each metric."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["group"], []).append(r)
    rows = []
    for group, members in groups.items():
        for precision in spec.precisions:
            for s in spec.sets:
                per = [m["scores"][precision][s.name] for m in members]
                row = {"group": group, "precision": precision, "set": s.name, "seeds": len(members),
                       **{k: _spread([p[k] for p in per]) for k in ("dice", "defect_recall", "fp_blobs_per_image")}}
                speeds = [m["speed"] for m in members if m.get("speed")]
                if speeds:
                    row["images_per_s"] = {k: statistics.fmean(sp[k] for sp in speeds) for k in speeds[0]}
                row["flops_per_image"] = members[0]["model"].get("flops_per_image")
                row["train_wall_s"] = _spread([m.get("training", {}).get("wall_s") for m in members])
                rows.append(row)
    return {"kind": "study", "name": spec.name, "grid": spec.grid, "train": spec.train,
            "sets": [dataclasses.asdict(s) for s in spec.sets], "precisions": list(spec.precisions),
            "rows": rows, "classical": classical, "arms": results}


def _cell(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "–"
    return f"{stat['mean']:.3f} ± {stat['sd']:.3f}" if stat["n"] > 1 else f"{stat['mean']:.3f}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: one table per held-out set, arms as rows, mean ± sd over training seeds."""
    lines = [f"# Study: {report['name']}", "",
             f"Grid: {', '.join(f'{k} ∈ {v}' for k, v in report['grid'].items()) or 'one arm'}; "
             f"precisions: {', '.join(report['precisions'])}. Mean ± sd over training seeds; each model at its own "
             "operating point (threshold and blob rule fitted under its false-alarm budget).", ""]
    for s in report["sets"]:
        lines += [f"## {s['name']} ({s['count']} images, preset {s['preset']}, seed {s['seed']})", "",
                  "| arm | precision | seeds | Dice | recall | false blobs/img | training s |",
                  "|---|---|---|---|---|---|---|"]
        for row in (r for r in report["rows"] if r["set"] == s["name"]):
            wall = (row.get("train_wall_s") or {}).get("mean")
            lines.append(f"| {row['group']} | {row['precision']} | {row['seeds']} | {_cell(row['dice'])} | "
                         f"{_cell(row['defect_recall'])} | {_cell(row['fp_blobs_per_image'])} | "
                         f"{'–' if wall is None else f'{wall:.0f}'} |")
        if report.get("classical"):
            c = report["classical"][s["name"]]
            lines.append(f"| classical detector | – | – | {_num(c['dice'])} | {_num(c['defect_recall'])} | "
                         f"{_num(c['fp_blobs_per_image'])} | – |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> Path | None:
    """Dice and recall per arm with their seed spread (one panel per set), and when speeds were measured the
    speed/accuracy frontier. Returns None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sets = [s["name"] for s in report["sets"]]
    fp32 = report["precisions"][0]
    has_speed = any("images_per_s" in r for r in report["rows"])
    fig, axes = plt.subplots(1, len(sets) + has_speed, figsize=(4.5 * (len(sets) + has_speed), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        rows = [r for r in report["rows"] if r["set"] == name and r["precision"] == fp32]
        # A defect-free set has no Dice or recall: its false blobs per image are what it shows.
        metrics = ("dice", "defect_recall") if any(r["dice"]["n"] for r in rows) else ("fp_blobs_per_image",)
        for k, metric in enumerate(metrics):
            xs = [i + 0.15 * (2 * k - len(metrics) + 1) for i in range(len(rows))]
            ys = [r[metric]["mean"] if r[metric]["n"] else float("nan") for r in rows]
            # Bars span the training seeds' range (min..max): with two or three seeds an sd says little.
            low = [y - r[metric]["min"] if r[metric]["n"] else 0.0 for y, r in zip(ys, rows)]
            high = [r[metric]["max"] - y if r[metric]["n"] else 0.0 for y, r in zip(ys, rows)]
            ax.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=3, label=metric.replace("defect_", ""))
        ax.set_xticks(range(len(rows)), [r["group"] for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_title(f"{name} ({fp32}; bars: range over training seeds)", fontsize=9)
        ax.legend(fontsize=8)
    if has_speed:
        ax = axes[0][-1]
        rows = [r for r in report["rows"] if r["set"] == sets[0] and "images_per_s" in r]
        for r in rows:
            ax.scatter(r["images_per_s"].get("batch_32", 0), r["dice"]["mean"] or 0)
            ax.annotate(r["group"], (r["images_per_s"].get("batch_32", 0), r["dice"]["mean"] or 0), fontsize=7)
        ax.set_xlabel("images/s at batch 32 (FP32 ONNX)")
        ax.set_ylabel(f"Dice on {sets[0]}")
        ax.set_title("speed / accuracy")
    fig.tight_layout()
    return write_figure(path, fig)
