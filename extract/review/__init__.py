"""`eligex review`: the QA reviewer's workbench (app.py serves it, workbench.py does the work).

Kept free of web imports, so that the report can link to the workbench without loading it.
"""

DEFAULT_PORT = 8765
REVIEW_URL = f"http://127.0.0.1:{DEFAULT_PORT}"  # where `eligex review` serves by default
