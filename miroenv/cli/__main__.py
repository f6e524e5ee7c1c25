"""`python -m miroenv.cli`: the same command as the `miroenv` script, under the same name in its help."""

from miroenv.cli import app

app(prog_name="miroenv")
