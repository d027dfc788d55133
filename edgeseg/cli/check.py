"""``edgeseg check``: will a deployment target accept these ONNX files, found out before any device is involved.
Thin command over :mod:`edgeseg.export.tensorrt_check`; no heavy import at module level."""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import claim_outputs, emit_report, force_option, report_output, user_errors


class CheckTarget(str, Enum):
    tensorrt = "tensorrt"


_CHECK_EPILOG = """\
Examples:

  edgeseg check --target tensorrt runs/demo/model.int8.onnx

  edgeseg check --json - runs/demo/model.fp16.onnx runs/demo/model.int8.onnx

One line per violation, FILE: NODE: RULE: what is wrong: how to fix it; exit code 1 if any file has one.
The rules (onnx-tensorrt's operator matrix for TensorRT 10.x and 11.x, symmetric Q/DQ pairs, edgeseg's
single float32 input with a dynamic batch) and their sources are in edgeseg/export/tensorrt_rules.json.
No TensorRT or GPU is needed.
"""


@user_errors
def check(
    models: list[Path] = typer.Argument(..., help="ONNX files to check."),
    target: CheckTarget = typer.Option(CheckTarget.tensorrt, "--target", help="What will run the files."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the violations as JSON here ('-' = stdout)."),
    force: bool = force_option(),
) -> None:
    """Check ONNX files against what TensorRT's ONNX parser accepts (static: no TensorRT needed)."""
    from edgeseg.export.tensorrt_check import MAJORS, check_tensorrt, majors_text, rule_ids

    claim_outputs([report_output(json_out)], {"model": models}, force)
    results = [(str(m), check_tensorrt(m, MAJORS)) for m in models]  # every file loads before any output
    passed = f"passes {len(rule_ids())} rules for TensorRT {majors_text(MAJORS)}"
    for name, violations in results:
        for line in [v.line(name) for v in violations] or [f"{name}: {passed}"]:
            typer.echo(line, err=json_out == "-")
    if json_out:
        report = {"target": target.value, "majors": list(MAJORS), "rules": list(rule_ids()),
                  "files": [{"file": name, "passes": not violations, "violations": [asdict(v) for v in violations]}
                            for name, violations in results]}
        emit_report(report, [], json_out)
    if any(violations for _, violations in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("check", epilog=_CHECK_EPILOG)(check)
