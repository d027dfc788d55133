"""``edgeseg study``: a sweep from a spec file, resumable, summarised. Thin command over :mod:`edgeseg.study`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import console, progress_bar, user_errors

# Typer renders help as rich markup: a bracketed word is a style tag unless escaped (\[grid]).
_STUDY_EPILOG = """\
Examples:

  edgeseg study studies/quick.toml                       # a minute: the machinery end to end (CI runs it)

  edgeseg study studies/losses.toml --out runs/study/losses   # hours: BCE vs Dice vs mixes and schedules

Each arm (one combination of the spec's \\[grid]) trains in OUT/arms/<arm>/, resumes from its checkpoint after
an interruption and is skipped once its result.json exists, so rerunning the same command continues a study.
Every arm is scored at its own operating point on the same held-out sets (OUT/data/), and the summary gives
mean ± sd over training seeds: OUT/report.md, report.json, report.png.
"""


@user_errors
def study(
    spec: Path = typer.Argument(..., help="The study spec (TOML): \\[train], \\[grid], \\[\\[sets]], \\[deploy]."),
    out: Optional[Path] = typer.Option(None, "--out", help="Study folder (default: runs/study/<spec name>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the spec and list its arms; train nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run a study: network × loss × data recipe × training seed × precision, on the same held-out sets."""
    from rich.markdown import Markdown

    from edgeseg.study import arms, load_spec, run_study

    parsed = load_spec(spec)
    out = out or Path("runs/study") / parsed.name
    todo = arms(parsed)
    if dry_run:
        done = [a for a in todo if (out / "arms" / a.slug / "result.json").is_file()]
        console.print(f"{parsed.name}: {len(todo)} arm(s), {len(done)} done in {out}; held-out sets "
                      f"{', '.join(s.name for s in parsed.sets)}; precisions {', '.join(parsed.precisions)}",
                      highlight=False, soft_wrap=True)
        for arm in todo:
            console.print(f"  {'done ' if arm in done else 'to do'}  {arm.slug}", highlight=False, soft_wrap=True)
        return
    with progress_bar("study", enabled=not quiet) as progress:
        run_study(parsed, out, progress, command=sys.argv)
    console.print(Markdown((out / "report.md").read_text()))
    console.print(f"wrote {out / 'report.md'}, report.json and report.png", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("study", epilog=_STUDY_EPILOG)(study)
