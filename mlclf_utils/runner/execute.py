"""Executing one stage notebook with papermill, and saying clearly how it ended.

The executed notebook is the stage's log: it keeps every output and, on failure, the traceback
in the failing cell. What the user sees in the terminal is one line per stage, a training bar
relayed from the kernel, and on failure the failing cell in words and the command that resumes.
Every ending (success, a failing cell, Ctrl-C, a dead kernel) is written to the manifest before
the runner moves on or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from mlclf_utils.artifacts import MANIFEST, write_json
from mlclf_utils.errors import MlclfError, SetupError
from mlclf_utils.runner.finished_bars import QUIET_LIBRARY_BARS, finish_bars_in
from mlclf_utils.runner.parameters import effective_parameters
from mlclf_utils.runner.runs import STATUS_FAILED, STATUS_INTERRUPTED, STATUS_OK, STATUS_RUNNING

# The notebooks' kernelspec names the kernel `make install` registers for the project's venv, so
# that JupyterLab, papermill and nbval all run them on the Python that has mlclf_utils.
KERNEL_NAME = "mlclf"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python (mlclf)", "language": "python"}
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# The kernel's own log (not the cells' output, which the notebook keeps): kept next to the
# executed notebook when the kernel wrote anything, e.g. its complaints when Ctrl-C stops it.
KERNEL_LOG_SUFFIX = ".kernel.log"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage: the manifest is written; the message says where and what next."""


def check_kernel(name: str = KERNEL_NAME) -> None:
    """The notebooks' kernel must exist before a stage starts, or papermill fails obscurely."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise SetupError(f"no Jupyter kernel named {name!r}: run `make install`, which registers "
                         f"it for this venv (or `{sys.executable} -m ipykernel install --sys-prefix "
                         f"--name {name} --display-name 'Python (mlclf)'`)") from None


def kernel_config():
    """The kernel manager provisions CurveZMQ keys, so that the kernel's sockets are encrypted:
    ipykernel warns about plain TCP on every start otherwise (issue 11)."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):  # a libzmq without libsodium: plain TCP, and the kernel's warning
        return Config()
    return Config({"KernelManager": {"transport_encryption": "required"}})


def _kernel_manager_class(log_path: Path):
    """A kernel manager that sends the kernel process's stderr to ``log_path``.

    On Ctrl-C the kernel is shut down while its interrupted cell is still replying, and it
    logs a ZMQError traceback; the run's one-line message is what a user needs to see.
    """
    from jupyter_client import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kwargs):
            with open(log_path, "ab") as log:  # the kernel keeps its own copy of the descriptor
                kwargs.setdefault("stderr", log)
                return await super().start_kernel(**kwargs)

    return LoggedKernelManager


@contextlib.contextmanager
def _kernel_environment(**extra: str):
    """Kernels inherit this process's environment. ``MPLBACKEND=Agg`` (set for headless test
    processes) would make every figure vanish from the executed notebooks, which are the run's
    record; the inline backend needs no display and embeds them. transformers' and datasets'
    own bars are switched off (``finished_bars``). ``extra`` variables (the training progress
    file) are set for the kernel too."""
    values = {"MPLBACKEND": INLINE_BACKEND, **QUIET_LIBRARY_BARS, **extra}
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _TrainingProgress:
    """Shows the training progress a stage's kernel writes (``train.progress_file_callback``)
    as a tqdm bar: step, total, loss and tqdm's own ETA. A thread follows the file while
    papermill waits for the cell; a stage without training leaves no bar."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        self._offset, self._bar, self._label = 0, None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._read()
            self._close()
        self.path.unlink(missing_ok=True)
        return False

    def _follow(self) -> None:
        while not self._stop.wait(0.5):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                self._show(json.loads(line))  # a progress line, not an artifact
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line must never stop the run

    def _show(self, record: dict) -> None:
        from tqdm import tqdm

        if self._bar is None or record.get("event") == "begin" or record["label"] != self._label:
            self._close()
            self._label = record["label"]
            self._bar = tqdm(total=record["total"] or None, desc=f"  training {self._label}",
                             unit="step", file=sys.stderr, dynamic_ncols=True)
        if record.get("loss") is not None:
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
        self._bar.update(max(0, int(record["step"]) - self._bar.n))
        if record.get("event") == "end":
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class CtrlCAftermath:
    """Keeps nbclient's complaints after a Ctrl-C off the terminal, in the kernel log.

    Ctrl-C reaches the runner inside nbclient's event loop, and papermill then shuts the kernel
    down while the interrupted cell's tasks still poll it (a cell busy in native code, such as
    03's scikit-learn probes, has not replied yet). nbclient logs "Kernel died", and the cell's
    task ends with a DeadKernelError that nothing awaits, which asyncio prints, whenever the task
    is collected, as "Task exception was never retrieved". The run's one line already says what
    happened. So from the SIGINT on, papermill's log records go to the kernel log, and on the way
    out the loop's tasks (tracked through its task factory) are settled and their exceptions
    retrieved and written there too.
    """

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.interrupted = False
        self._tasks: list[asyncio.Task] = []
        self._loop = self._previous_factory = None
        self._wrapped_sigint = False

    def __enter__(self):
        from jupyter_core.utils import ensure_event_loop

        self._loop = ensure_event_loop()  # the loop nbclient's run_sync uses in this thread
        self._previous_factory = self._loop.get_task_factory()
        self._loop.set_task_factory(self._make_task)
        logging.getLogger("papermill").addFilter(self._divert)
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            signal.signal(signal.SIGINT, self._on_sigint)
            self._wrapped_sigint = True
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._wrapped_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        logging.getLogger("papermill").removeFilter(self._divert)
        self._loop.set_task_factory(self._previous_factory)
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.interrupted = True
        if self.interrupted:
            self._settle()
        self._tasks.clear()
        return False

    def _make_task(self, loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        self._tasks.append(task)
        return task

    def _on_sigint(self, signum, frame):
        self.interrupted = True
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as before

    def _divert(self, record: logging.LogRecord) -> bool:
        if not self.interrupted:
            return True
        self._write(f"papermill {record.levelname}: {record.getMessage()}")
        return False

    def _settle(self) -> None:
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending and not self._loop.is_running() and not self._loop.is_closed():
            with contextlib.suppress(Exception, KeyboardInterrupt):
                self._loop.run_until_complete(asyncio.wait(pending, timeout=5))
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                error = task.exception()
                self._write(f"after Ctrl-C, task {task.get_name()} ended with "
                            + "".join(traceback.format_exception(error)).rstrip())

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError), open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"[mlclf runner] {text}\n")


# ipykernel's line when a SIGINT lands in one of its message handlers: jupyter_client interrupts
# every kernel on its way to shutting it down, so a stage that ended well can leave just this
# behind, as "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." (traitlets' format).
SHUTDOWN_INTERRUPT = re.compile(r"(\[\w+\] (\w+ \| )?)?KeyboardInterrupt caught in kernel\.?")


def _finish_bars(output: Path) -> None:
    """Each bar's last frame in the saved notebook, failed and interrupted stages included
    (where a reader most wants to see how far a loop got); cosmetic, so it never changes how
    the stage ended."""
    try:
        if output.is_file():
            finish_bars_in(output)
    except Exception as exc:  # noqa: BLE001
        print(f"note: the progress bars in {output} were left as saved ({type(exc).__name__}: "
              f"{exc})", file=sys.stderr, flush=True)


def kernel_log_has_news(path: Path) -> bool:
    """Whether the kernel log says more than the shutdown's own interrupt."""
    with contextlib.suppress(OSError):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return any(line.strip() and not SHUTDOWN_INTERRUPT.fullmatch(line.strip()) for line in lines)
    return True


def _failing_cell(output: Path, exec_count) -> str:
    """The first line of the failing cell's code, so the message says *which* cell in words."""
    try:
        import nbformat

        notebook = nbformat.read(str(output), as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code" and cell.get("execution_count") == exec_count:
                lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")]
                return lines[0][:100] if lines else ""
    except Exception:  # noqa: BLE001 - a nicer message must never hide the real failure
        pass
    return ""


def _running_cell(output: Path) -> int | None:
    """The execution count of the cell the interruption stopped: the one papermill had started
    and not finished, or the one the kernel's own KeyboardInterrupt ended."""
    try:
        import nbformat

        notebook = nbformat.read(str(output), as_version=4)
    except Exception:  # noqa: BLE001 - a nicer message must never hide the interruption
        return None
    code = [c for c in notebook.cells if c.cell_type == "code"]
    for cell in code:
        if (cell.metadata.get("papermill", {}).get("status") == "running"
                or any(o.get("ename") == "KeyboardInterrupt" for o in cell.get("outputs", []))):
            return cell.get("execution_count")
    counted = [c.execution_count for c in code if c.get("execution_count") is not None]
    return counted[-1] if counted else None


def execute_stage(notebook: Path, given: dict, run_dir: Path, manifest: dict, *, counter: str,
                  hint: str, progress_file: Path, kernel_name: str | None = None,
                  progress: bool = True) -> dict:
    """One stage: announced by name, executed by papermill, recorded in ``manifest`` (which is
    rewritten at every change of status, so a crash leaves it true). Returns its entry."""
    import papermill

    from mlclf_utils.modeling.train import PROGRESS_FILE_ENV

    stage = notebook.stem
    print(f"{counter} {stage}", file=sys.stderr, flush=True)
    output = run_dir / notebook.name
    entry = {"stage": stage, "notebook": output.name,
             "parameters": effective_parameters(notebook, given), "status": STATUS_RUNNING,
             "started": _dt.datetime.now().isoformat(timespec="seconds")}
    manifest["stages"].append(entry)
    write_json(run_dir / MANIFEST, manifest)
    started = time.perf_counter()
    kernel_log = run_dir / f"{stage}{KERNEL_LOG_SUFFIX}"

    def ended(status: str, **details) -> None:
        entry.update(status=status, seconds=round(time.perf_counter() - started, 1), **details)
        write_json(run_dir / MANIFEST, manifest)

    def interrupted(cell) -> RunInterrupted:
        ended(STATUS_INTERRUPTED, cell=cell)
        return RunInterrupted(f"interrupted during {stage}"
                              + (f" (cell {cell})" if cell is not None else "")
                              + f"; resume with {hint}")

    try:
        with _kernel_environment(**{PROGRESS_FILE_ENV: str(progress_file)}), \
                _TrainingProgress(progress_file, progress), CtrlCAftermath(kernel_log):
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters={**given, "run_dir": str(run_dir.resolve())},
                cwd=str(notebook.parent),
                kernel_name=kernel_name,
                progress_bar={"desc": f"  {stage} cells"} if progress else False,
                request_save_on_cell_execute=True,
                config=kernel_config(),
                kernel_manager_class=_kernel_manager_class(kernel_log),
            )
    except papermill.PapermillExecutionError as exc:
        if exc.ename == "KeyboardInterrupt":  # the kernel had the Ctrl-C first
            raise interrupted(exc.exec_count) from None
        line = _failing_cell(output, exc.exec_count)
        ended(STATUS_FAILED, error=f"{exc.ename}: {exc.evalue}", cell=exc.exec_count,
              cell_index=exc.cell_index, cell_code=line)
        raise MlclfError(
            f"stage {stage} failed in cell [{exc.exec_count}]"
            + (f" ({line})" if line else "") + f" with {exc.ename}: {exc.evalue}\n"
            f"  -> the executed notebook with the traceback is {output}\n"
            f"  -> after fixing it: {hint}"
        ) from None
    except KeyboardInterrupt:
        raise interrupted(_running_cell(output)) from None
    except Exception as exc:  # a dead kernel, a cell timeout: same record, same advice
        ended(STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
        raise MlclfError(
            f"stage {stage} stopped with {type(exc).__name__}: {exc}\n"
            f"  -> the notebook as far as it got is {output}\n"
            f"  -> to try again: {hint}"
        ) from exc
    finally:
        if kernel_log.exists() and not kernel_log_has_news(kernel_log):
            kernel_log.unlink()  # the kernel had nothing to say
        _finish_bars(output)
    ended(STATUS_OK)
    print(f"{counter} {stage} ok ({entry['seconds']} s)", file=sys.stderr, flush=True)
    return entry
