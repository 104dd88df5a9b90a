"""``python -m adapter.cli``: the same as the ``trial-adapter`` command."""

from adapter.cli.main import run

run()
