"""Untrained registry networks exported to ONNX, for speed-only benchmarks (weights do not change speed).

    python -m edgeseg.bench.nets unet inline --out runs/bench     # → runs/bench/<name>/model.onnx

Each folder gets ``model.keras`` (+ manifest with the model's params and FLOPs, marked untrained) and
``model.onnx`` exported by :func:`edgeseg.export.onnx.export_onnx` (same path as a trained model takes), so
``edgeseg bench`` measures exactly the graph a deployment would run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeseg.artifacts import atomic_path, write_manifest


def export_untrained(name: str, out_dir: str | Path, image_size: int = 256, seed: int = 0) -> Path:
    """``out_dir/model.onnx`` of the registry network ``name`` with its initial (seeded) weights."""
    import keras

    from edgeseg.export.onnx import export_onnx
    from edgeseg.models import build, describe

    out_dir = Path(out_dir)
    keras.utils.set_random_seed(seed)
    model = build(name)
    kpath = out_dir / "model.keras"
    with atomic_path(kpath, suffix=".keras") as tmp:
        model.save(tmp)
    write_manifest(kpath, "model", {"model": name, "model_kwargs": {}, "trained": False, "seed": seed},
                   model=describe(model, name, image_size))
    return export_onnx(kpath, out_dir / "model.onnx", image_size=image_size).path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+", help="registry names (edgeseg.models.REGISTRY)")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--image-size", type=int, default=256)
    args = p.parse_args(argv)
    for name in args.names:
        path = export_untrained(name, Path(args.out) / name, args.image_size)
        print(path)


if __name__ == "__main__":
    main()
