"""The `estate` command line (Typer + Rich)."""
