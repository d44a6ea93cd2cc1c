"""``python -m chainforget`` = the ``chainforget`` command."""

from chainforget.cli import main

main()
