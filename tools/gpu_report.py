"""The one JSON report of ``tools/gpu_check.sh``: what ran on this GPU host, what passed, what could not run.

Reads the folder the script filled (``gpu.txt`` from nvidia-smi, ``steps.tsv``, pytest's JUnit XML files,
``transport.json``, ``bench.json``) and writes ``gpu_check.json`` beside them. Exit status: 2 when no GPU was
visible, 1 when a step that ran failed, else 0. Standard library only: it runs on a bare GPU host.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def junit(path: Path) -> dict | None:
    """Counts and the failed tests' names and first message lines from a pytest JUnit XML file."""
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            for bad in [*case.findall("failure"), *case.findall("error")]:
                message = (bad.get("message") or bad.text or "").strip().splitlines()
                failed.append({"test": f"{case.get('classname')}::{case.get('name')}",
                               "message": message[0][:300] if message else ""})
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed}


def steps(path: Path) -> dict[str, dict]:
    out = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, rc, seconds, *why = line.split("\t")
        out[name] = ({"status": "not run", "why": why[0] if why else ""} if rc == "skipped" else
                     {"status": "passed" if rc == "0" else "failed", "exit_code": int(rc), "seconds": int(seconds)})
    return out


def speed(bench: dict) -> dict:
    """images/s per model and batch, and the INT8 engine's speed over the FP16 engine's at each batch."""
    table: dict[str, dict[int, float]] = {}
    for row in bench.get("rows", []):
        if row.get("mode") in ("single", "batched"):
            table.setdefault(Path(row["model"]).name, {})[int(row["batch_size"])] = row["images_per_s"]
    fp16, int8 = table.get("model.fp16.engine", {}), table.get("model.int8.engine", {})
    ratio = {b: int8[b] / fp16[b] for b in sorted(set(fp16) & set(int8)) if fp16[b]}
    return {"images_per_s": table, "int8_over_fp16": ratio}


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(folder: str) -> int:
    out = Path(folder)
    gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").is_file() else ""
    ran = steps(out / "steps.tsv")
    bench = read_json(out / "bench.json")
    engines = {p.name: (read_json(p.with_name(p.name + ".json")) or {}).get("layers")
               for p in sorted((out / "engines").glob("*.engine"))}
    report = {
        "gpu": gpu or None,
        "steps": ran,
        "transport_tests": junit(out / "transport-tests.xml"),
        "gpu_tests": junit(out / "gpu-tests.xml"),
        "transport_bench": read_json(out / "transport.json"),
        "engine_layers": engines or None,
        "speed": speed(bench) if bench else None,
        "tensorrt_ran": any(name in ran and ran[name]["status"] != "not run" for name in ("engine-fp16", "engine-int8")),
        "note": "transport results come from a test kernel, never from TensorRT",
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, s in ran.items():
        print(f"{name:28s} {s['status']}{': ' + s['why'] if s.get('why') else ''}")
    print(f"report: {out / 'gpu_check.json'}")
    if not gpu:
        return 2
    return 1 if any(s["status"] == "failed" for s in ran.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/gpu-check"))
