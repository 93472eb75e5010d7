"""``python -m slimcodec.cli``: the same as the ``slim`` command."""

from slimcodec.cli.main import main

main()
