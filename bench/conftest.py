"""The quix-streams baseline runs in a virtualenv of its own: not importable here."""

collect_ignore = ["baselines/quix_app.py"]
