"""`python -m ecoserve.proto`: regenerate the stubs from protos/ecoserve/v1."""

from ecoserve.proto.build import main

main()
