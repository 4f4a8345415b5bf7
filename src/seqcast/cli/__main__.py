"""`python -m seqcast.cli`: the same as the `seqcast` command."""

from seqcast.cli import main

main()
