"""The `ecoserve` command line. Each subcommand lives next to the code it drives."""

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
