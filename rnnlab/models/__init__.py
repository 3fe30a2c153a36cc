"""Models: compositions of cells and runners, still plain functions over params dicts."""

from rnnlab.models import sequence

__all__ = ["sequence"]
