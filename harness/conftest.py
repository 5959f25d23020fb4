"""The faults' ``sitecustomize`` patches segstream when imported: only faulty workers
import it, never the test session collecting the harness's doctests."""

collect_ignore = ["faults/sitecustomize.py"]
