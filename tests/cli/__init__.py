"""Tests of the `miroenv` command line and of a base (no extras) install."""
