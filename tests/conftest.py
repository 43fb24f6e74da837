"""Shared fixtures. Tests never touch the Hub, the real runs/ folder or real AWS."""

import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest

# A shell's background job (`make test &`, nohup) starts with SIGINT ignored, and every process
# it starts inherits that, so the Ctrl-C tests' CLI would never feel their signal. A Python-level
# handler is reset to the default at exec, which gives the children back a working Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# tools/ holds the notebook tooling (references.py), which is not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def pytest_configure(config):
    # Set before any kernel starts (nbval, papermill): kernels inherit the environment.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["MLCLF_RUNS_DIR"] = tempfile.mkdtemp(prefix="mlclf-test-runs-")


@pytest.fixture(scope="session")
def smoke_csv() -> Path:
    return FIXTURES / "smoke_packages.csv"


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    from mlclf_utils.modeling import encoders

    return encoders.resolve_model_path(encoders.TINY_MODEL)


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from mlclf_utils.modeling import encoders

    return encoders.resolve_model_path(encoders.DEFAULT_MODEL)


@pytest.fixture()
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("MLCLF_RUNS_DIR", str(root))
    return root


def pytest_collection_modifyitems(config, items):
    # nbval items (the reference notebooks) are notebook tests too, and serial: nbval keeps one
    # kernel per notebook across its cells, and 03-05 continue the run that 01 and 02 started.
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebooks)
            item.add_marker(pytest.mark.serial)
    # `make test` runs the rest on pytest-xdist workers with --dist loadgroup: each test file
    # stays on one worker, so its module-scoped fixtures (a shared smoke run) are built once.
    if config.pluginmanager.hasplugin("xdist"):
        for item in items:
            item.add_marker(pytest.mark.xdist_group(str(Path(str(item.fspath)).relative_to(ROOT))))


# --- AWS (moto) fixtures: a real HTTP endpoint on 127.0.0.1, so boto3 and the sagemaker SDK
# --- run their normal request code. Nothing may reach real AWS.

_AWS_VARS_TO_CLEAR = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)
FAKE_AWS_SECRET = "mlclf-fake-secret-4f1d9c"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A moto server for the session; AWS variables point at it and are restored afterwards."""
    import socket

    from moto.server import ThreadedMotoServer

    from mlclf_utils.cloud.sagemaker_job import TELEMETRY_ENV, telemetry_opt_out

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in _AWS_VARS_TO_CLEAR:
            mp.delenv(name, raising=False)
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
            mp.delenv(name)  # a service-specific endpoint would win over AWS_ENDPOINT_URL
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))  # no real profiles
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "AKIAMLCLFTESTING0000")
        mp.setenv("AWS_SECRET_ACCESS_KEY", FAKE_AWS_SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_REGION", "us-east-1")
        mp.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        mp.setenv(TELEMETRY_ENV, "")  # recorded for restoring; the helper then fills it in
        telemetry_opt_out(home)
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture()
def no_real_aws(moto_server, monkeypatch):
    """Fail any name lookup other than the local server's, so a call to real AWS cannot pass."""
    import socket

    real_getaddrinfo = socket.getaddrinfo
    attempts = []

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(host)  # recorded too: the SDK swallows some errors (telemetry)
            raise OSError(f"test tried to reach {host!r}; only the moto server is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    yield moto_server
    assert not attempts, f"the test tried to reach {sorted(set(attempts))}"


@pytest.fixture()
def s3_bucket(no_real_aws, request) -> str:
    """A fresh, empty bucket on the moto server, named after the test."""
    import re
    import uuid

    import boto3

    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:8]}"
    boto3.session.Session().client("s3").create_bucket(Bucket=name)
    return name
