"""Analyses that need no training loop: gradient probes, the one-unit wall, their figures.

gradients     dL/d(carry)_t for every step t in one backward pass (zero probes), rate fits
pascanu_wall  the one-unit model of Pascanu, Mikolov & Bengio (2013, sec. 2.3)
figures       matplotlib (Agg) PNGs of both
"""

from rnnlab.analysis import gradients, pascanu_wall

__all__ = ["gradients", "pascanu_wall"]
