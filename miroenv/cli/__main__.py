"""`python -m miroenv.cli`."""

from miroenv.cli import app

app()
