"""Every command's ``--help`` shows the text its source gives: Typer renders help through rich markup, where a
bracketed word such as ``[grid]`` is a style tag and silently disappears unless escaped."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from edgeseg.cli.app import app

COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bracketed_words_survive_rich_markup(name):
    command = COMMANDS[name]
    texts = [command.help or "", command.epilog or ""] + [getattr(p, "help", None) or "" for p in command.params]
    wanted = {" ".join(m.split()) for t in texts for m in re.findall(r"\[[^\]\n]*\]", t.replace("\\[", "["))}
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert not [w for w in wanted if w not in shown], result.output
