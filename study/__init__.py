"""Produce answers: cohort data, rendered images, prompts, readers and the sweep.

The Python API is the product; the ``vlmstudy`` command line is a thin layer
over it.
"""

__version__ = "0.1.0"
