"""`eligex eval`: score extractions against the hand-labelled gold files (../shared/SCHEMA.md, "How
extractions are scored").

`scoring` is the pure core (plain dicts in, plain dicts out), `report` renders metrics as Markdown
and HTML, `harness` does the I/O: gold files, splits, stored runs and report files.
"""
