"""The front door: the typer CLI (cli.py), the -p run and its output contracts (headless.py), the
interactive session (interactive.py) and its terminal rendering (ui.py)."""
