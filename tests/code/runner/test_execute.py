"""What the runner checks before papermill starts a kernel, and how it configures one."""

import re

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


def test_after_ctrl_c_nbclients_complaints_go_to_the_kernel_log_not_the_terminal(tmp_path, caplog):
    """What papermill does on Ctrl-C, without a kernel: the interrupt leaves the loop with a
    cell task abandoned, papermill's cleanup runs the loop again, the task then fails (a dead
    kernel) and nbclient logs it. Neither may reach the terminal; the kernel log keeps both."""
    import asyncio
    import gc
    import logging
    import os
    import signal
    import threading

    from jupyter_core.utils import ensure_event_loop

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set from the main thread")
    log = tmp_path / "03_train.kernel.log"

    async def abandoned_cell():
        await asyncio.sleep(0.05)
        raise RuntimeError("Kernel died")  # as nbclient's DeadKernelError, once nothing awaits it

    async def execute_cell():
        asyncio.ensure_future(abandoned_cell())
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C
        await asyncio.sleep(30)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    loop = ensure_event_loop()
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(KeyboardInterrupt):
            with execute.CtrlCAftermath(log):
                try:
                    loop.run_until_complete(execute_cell())
                finally:  # papermill's cleanup: the loop runs again and the cell task fails
                    loop.run_until_complete(asyncio.sleep(0.3))
                    logging.getLogger("papermill").error("Kernel died while waiting for execute reply.")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
        gc.collect()  # where asyncio would say "Task exception was never retrieved"
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "never retrieved" not in caplog.text and "Kernel died" not in caplog.text, caplog.text
    kept = log.read_text()
    assert "[mlclf runner] papermill ERROR: Kernel died while waiting for execute reply." in kept
    assert re.search(r"after Ctrl-C, task \S+ ended with Traceback.*RuntimeError: Kernel died",
                     kept, re.S), kept
    assert loop.get_task_factory() is None and not asyncio.all_tasks(loop)  # the loop is as it was


def test_without_ctrl_c_the_runner_leaves_papermills_log_and_task_errors_alone(tmp_path, caplog):
    import asyncio
    import logging

    from jupyter_core.utils import ensure_event_loop

    log = tmp_path / "01_preprocess.kernel.log"
    with caplog.at_level(logging.WARNING), execute.CtrlCAftermath(log):
        logging.getLogger("papermill").warning("Passed unknown parameter: x")
        ensure_event_loop().run_until_complete(asyncio.sleep(0))
    assert "Passed unknown parameter: x" in caplog.text and not log.exists()


def test_a_kernel_log_with_only_the_shutdown_interrupt_has_no_news(tmp_path):
    """The line as a real kernel writes it (traitlets' "[App] LEVEL |" prefix): a bare-string
    match missed it, and the CLI tests' run directories kept a kernel log after a clean stage."""
    import nbformat
    import papermill

    notebook = tmp_path / "in.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "get_ipython().kernel.log.error('KeyboardInterrupt caught in kernel.')")]), notebook)
    real = tmp_path / "real.log"
    papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), progress_bar=False,
                               kernel_name=execute.KERNEL_NAME, config=execute.kernel_config(),
                               kernel_manager_class=execute._kernel_manager_class(real))
    assert "KeyboardInterrupt caught in kernel." in real.read_text()
    assert not execute.kernel_log_has_news(real)

    bare, noisy, empty = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "c.log"
    bare.write_text("KeyboardInterrupt caught in kernel.\n\n")
    noisy.write_text(real.read_text() + "[IPKernelApp] WARNING | something real\n")
    empty.write_text("")
    assert not execute.kernel_log_has_news(bare)
    assert execute.kernel_log_has_news(noisy)
    assert not execute.kernel_log_has_news(empty)
