"""`python -m ecoserve` is the `ecoserve` command."""

from ecoserve.cli import main

main()
