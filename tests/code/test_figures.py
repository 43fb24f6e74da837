"""The figure helper, and the promise behind it: training and serving never load plotting."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["mlclf_utils.modeling.train", "mlclf_utils.modeling.trainer",
                                    "mlclf_utils.modeling.hyperparameters",
                                    "mlclf_utils.modeling.distributed", "mlclf_utils.stages.train",
                                    "mlclf_utils.serving.predict",
                                    "mlclf_utils.serving.hosting", "mlclf_utils.cloud.sagemaker_training"])
def test_training_and_serving_entry_points_import_no_plotting_library(module):
    """The SageMaker container installs neither matplotlib nor seaborn (see
    sagemaker_job.CONTAINER_REQUIREMENTS), so train.py must import without them."""
    program = (f"import sys, {module}\n"
               "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'seaborn'})\n"
               "print(','.join(loaded))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "", f"importing {module} loads {result.stdout.strip()}"


def test_pyplot_falls_back_to_agg_without_a_notebook_backend(tmp_path):
    program = ("import os; os.environ.pop('MPLBACKEND', None)\n"
               "from mlclf_utils.figures import pyplot, save_figure\n"
               "plt, sns = pyplot()\n"
               "import matplotlib\n"
               "fig, ax = plt.subplots(); ax.plot([0, 1], [1, 0])\n"
               f"save_figure(fig, {str(tmp_path / 'nested' / 'f.png')!r})\n"
               "print(matplotlib.get_backend().lower())")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True, env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "agg"
    assert (tmp_path / "nested" / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_pyplot_keeps_the_notebook_backend():
    program = ("from mlclf_utils.figures import pyplot\nplt, _ = pyplot()\n"
               "import matplotlib; print(matplotlib.get_backend())")
    env = {"PATH": "/usr/bin:/bin", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True, env=env)
    assert result.stdout.strip() == "module://matplotlib_inline.backend_inline"
