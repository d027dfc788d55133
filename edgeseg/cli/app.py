"""The ``edgeseg`` application: every command group registers itself here, in pipeline order."""

from __future__ import annotations

import typer

from edgeseg import __version__

app = typer.Typer(
    name="edgeseg",
    help=(
        "Inline defect segmentation: generate low-contrast synthetic defects (or place them on a line's own "
        "images), train Keras networks, export to ONNX, quantize to FP16/INT8, build TensorRT engines, evaluate "
        "and benchmark.\n\n"
        "Quick start:  edgeseg generate --preset test --count 50 --out data/test  &&  "
        "edgeseg eval --model classical --data data/test"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          verbose: bool = typer.Option(False, "--verbose", help="Keep TensorFlow's start-up log lines "
                                       "(oneDNN, CPU instructions, absl), hidden by default.")) -> None:
    """edgeseg command line."""
    if verbose:
        from edgeseg.cli import tflog

        tflog.verbose()


def _register() -> None:
    # Each module adds its commands with register(app); the modules import no heavy package at import time.
    import importlib

    for name in ("data", "train", "operating", "evaluate", "equal_fa", "line", "deploy", "serving", "check", "bench",
                 "study"):
        try:
            module = importlib.import_module(f"edgeseg.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"edgeseg.cli.{name}":
                continue  # command group not written yet
            raise
        module.register(app)


_register()


def _stop(signum: int, frame) -> None:
    """SIGTERM and SIGHUP end a command the way Ctrl-C does: the atomic writers' ``finally`` blocks remove
    their temporary files and release their locks. Later signals are ignored so that clean-up can finish."""
    import signal

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    """The ``edgeseg`` console script."""
    import signal

    from edgeseg.cli import tflog

    tflog.quiet()  # before any command imports TensorFlow; --verbose undoes it
    for s in (signal.SIGTERM, signal.SIGHUP):
        # A signal the caller chose to ignore stays ignored (`nohup edgeseg train ...` survives a hang-up).
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _stop)
    app()


if __name__ == "__main__":
    main()
