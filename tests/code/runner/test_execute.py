"""What the runner checks before papermill starts a kernel, and how it configures one."""

import pytest

from mlclf_utils.errors import SetupError
from mlclf_utils.runner import execute


def test_a_missing_kernel_is_named_with_the_command_that_registers_it():
    with pytest.raises(SetupError, match=r"no Jupyter kernel named 'mlclf-missing'.*make install"):
        execute.check_kernel("mlclf-missing")


def test_the_kernelspec_the_notebooks_carry_names_the_runners_kernel():
    assert execute.KERNELSPEC["name"] == execute.KERNEL_NAME
    assert execute.KERNELSPEC["language"] == "python"


def test_kernel_sockets_are_encrypted_when_libzmq_can():
    import zmq

    config = execute.kernel_config()
    if zmq.has("curve"):
        assert config.KernelManager.transport_encryption == "required"
    else:
        assert "KernelManager" not in config
