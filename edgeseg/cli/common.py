"""What every command shares: user-error handling, rich progress, option parsing, the output policy, output."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgeseg.errors import EdgesegError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# One ExitStack per running command: what claim_outputs holds is released when the command ends, however.
_commands: list[contextlib.ExitStack] = []


def user_errors(fn: F) -> F:
    """Turn an :class:`EdgesegError` into one line on stderr and exit code 1 (no traceback); release what the
    command held (:func:`claim_outputs`) when it ends."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with contextlib.ExitStack() as stack:
                _commands.append(stack)
                try:
                    return fn(*args, **kwargs)
                finally:
                    _commands.pop()
        except EdgesegError as e:
            # The message is plain text: no rich markup ([...]) or emoji codes (:end:) inside it.
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True, emoji=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def force_option():
    """``--force``, the same on every command that writes."""
    return typer.Option(False, "--force", help="Replace an output that holds another artifact (a model, a "
                        "manifest, a dataset's manifest, an earlier run). Inputs are never replaced.")


def claim_outputs(outputs: list[Any], inputs: dict[str, Any] | None = None, force: bool = False) -> None:
    """Check the command's outputs against what it reads (:func:`edgeseg.outputs.check_outputs`) before any
    work, and hold their locks until the command ends. Outputs that are None (an option not given) or ``-``
    (stdout) are skipped."""
    from edgeseg.outputs import claim

    outputs = [o for o in outputs if o is not None and str(o.path) != "-"]
    _commands[-1].enter_context(claim(outputs, inputs, force))


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int | None, str], None]]:
    """A rich progress bar driven by the library's ``progress(done, total, message)`` callback."""
    if not enabled:
        yield lambda done, total, message="": None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[message]}"))
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None, message="")

        def update(done: int, total: int | None, message: str = "") -> None:
            bar.update(task, completed=done, total=total, message=message)

        yield update


def parse_range(text: str, cast: Callable[[str], Any] = int, name: str = "range") -> tuple[Any, Any]:
    """``"3:4"`` → (3, 4); ``"3"`` → (3, 3). Raises EdgesegError on bad syntax or lo > hi."""
    parts = text.split(":")
    try:
        lo, hi = (cast(parts[0]), cast(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None or lo > hi:
        raise EdgesegError(f"{name} must be LO:HI with LO <= HI (e.g. 3:4), got {text!r}")
    return lo, hi


def parse_int_list(text: str, name: str = "list") -> list[int]:
    """``"1,2,4"`` → [1, 2, 4]; every value must be a positive integer."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise EdgesegError(f"{name} must be comma-separated positive integers (e.g. 1,2,4), got {text!r}")
    return values


#: Most images per inference call a command takes (256² float32 images: 1 GiB of input at this batch).
MAX_BATCH = 4096


def check_inference(threshold: float | None, batch_size: int) -> None:
    """``--threshold`` (when given) and ``--batch-size`` of the commands that run a model, in one line if wrong."""
    from edgeseg.validate import finite, whole

    if threshold is not None:
        finite("--threshold", threshold, 0, 1)
    whole("--batch-size", batch_size, 1, MAX_BATCH)


def report_output(path: Any, option: str = "--json", artifact: str | None = None):
    """A report file (``--json``, ``--plot``) as an output for :func:`claim_outputs`; None for none or stdout.
    ``artifact``: the manifest kind the report itself carries (an earlier one may be replaced)."""
    from edgeseg.outputs import Kind, Output

    if not path or str(path) == "-":
        return None
    kind = Kind.plot if option == "--plot" else Kind.report
    return Output(path, kind, option, artifact)


def print_json(obj: Any) -> None:
    """Machine output on stdout (no rich markup, no wrapping)."""
    from edgeseg.artifacts import _json_default

    typer.echo(json.dumps(obj, indent=2, default=_json_default))


def emit_report(report: dict[str, Any], tables: list[Any], json_out: str | None) -> None:
    """Tables for people, the report as JSON for machines: ``--json -`` puts the JSON on stdout (the tables
    go to stderr then), ``--json FILE`` writes it atomically, no ``--json`` prints the tables alone."""
    from edgeseg.artifacts import write_json

    for table in tables:
        (err_console if json_out == "-" else console).print(table)
    if json_out == "-":
        print_json(report)
    elif json_out:
        write_json(json_out, report)
        console.print(f"report written to {json_out}", highlight=False, soft_wrap=True)
