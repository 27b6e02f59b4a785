"""The `ecoserve` command line. Each subcommand lives next to the code it drives."""

import inspect

import click

from ecoserve.bench.cli import bench
from ecoserve.predictor.cli import predictor
from ecoserve.serve_cli import generate, up
from ecoserve.sim.cli import simulate


@click.group()
@click.version_option(package_name="ecoserve")
def main() -> None:
    """EcoServe: LLM serving that fills compute and KV cache every iteration."""


main.add_command(predictor)
main.add_command(simulate)
main.add_command(up)
main.add_command(generate)
main.add_command(bench)


def summary(command: click.Command) -> str:
    """A command's one-line summary: the first paragraph of its help, whole (click would cut it to
    the width left on the line, ending it with "...")."""
    text = inspect.cleandoc(command.help or "")
    first = text.split("\n\n", 1)[0].split("\b", 1)[0]
    return " ".join(first.split())


def _full_summaries(group: click.Group) -> None:
    """Give every subcommand (and theirs) its whole summary in the command lists of --help."""
    for command in group.commands.values():
        if not command.short_help:
            command.short_help = summary(command)
        if isinstance(command, click.Group):
            _full_summaries(command)


_full_summaries(main)
