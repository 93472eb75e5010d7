"""The ``slim`` command-line tool."""
