"""Batch runs of the stage notebooks, and the sweep built on them.

``runs`` (run directories, LATEST and the by-hand session pointer), ``parameters`` (the
notebooks' typed parameters cells), ``injected_parameters`` (papermill's injected cell, checked
in a notebook), ``resume`` (earlier stages taken from another run),
``execute`` (papermill, one stage), ``pipeline`` (plan and run a range of stages),
``sweep_launch`` (one run per grid combination) and ``sweep`` (what a sweep left, compared).
"""
