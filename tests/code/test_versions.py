"""Package versions for manifests and bundles, read from metadata without importing anything."""

import subprocess
import sys

from mlclf_utils import versions


def test_versions_name_python_and_each_package_and_none_when_missing():
    found = versions.package_versions(("numpy", "no-such-distribution-mlclf"))
    assert found["python"].count(".") == 2
    assert found["numpy"] and found["no-such-distribution-mlclf"] is None


def test_reading_versions_imports_none_of_the_packages():
    program = ("import sys; from mlclf_utils import versions; versions.package_versions()\n"
               "print(sorted({'torch', 'transformers', 'numpy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
