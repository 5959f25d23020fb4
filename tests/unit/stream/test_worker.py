"""A worker that cannot reach Kafka says so clearly (after waiting the configured time),
and tells its peers an address they can reach."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from pydantic import ValidationError

from harness.workers import REPO_ROOT, free_port
from segstream.settings import Settings
from segstream.stream.app import create_app
from segstream.stream.worker import SHUTDOWN_TIMEOUT_EXIT, StartupError, prepare_topics


def test_an_unreachable_broker_is_waited_for_then_reported() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_wait_s=0.5)
    started = time.monotonic()
    with pytest.raises(StartupError, match=r"cannot reach Kafka at 127\.0\.0\.1"):
        prepare_topics(settings)
    assert time.monotonic() - started >= 0.5


def test_a_wildcard_bind_advertises_the_configured_host_to_peers() -> None:
    """Binding every interface is fine; telling peers to call 0.0.0.0 is not."""
    with pytest.raises(ValidationError, match="SEGSTREAM_WEB_ADVERTISED_HOST"):
        Settings(web_host="0.0.0.0")
    app = create_app(Settings(web_host="0.0.0.0", web_advertised_host="10.1.2.3", web_port=7001))
    assert str(app.conf.canonical_url) == "http://10.1.2.3:7001"
    assert app.conf.web_bind == "0.0.0.0"


def test_faust_does_not_time_commits_it_never_makes() -> None:
    app = create_app(Settings())
    assert app.conf.broker_commit_livelock_soft_timeout >= 100 * 365 * 24 * 3600


def test_sasl_without_credentials_is_refused_with_what_to_set() -> None:
    with pytest.raises(ValidationError, match="SEGSTREAM_KAFKA_USERNAME"):
        Settings(kafka_security_protocol="SASL_SSL")
    masked = Settings(
        kafka_security_protocol="SASL_SSL", kafka_username="u", kafka_password="hunter2"
    ).model_dump_json()
    assert "hunter2" not in masked


def test_a_stop_that_hangs_is_cut_short_at_the_shutdown_bound() -> None:
    """What SIGTERM starts: a process whose clean stop never ends exits on its own, with a
    status saying so and the reason logged."""
    program = (
        "import time\n"
        "from segstream.stream import worker\n"
        "worker._exit_after(0.3)\n"
        "time.sleep(3600)\n"  # a stop that hangs (the run's timeout would end it first)
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, timeout=300, cwd=REPO_ROOT
    )
    assert done.returncode == SHUTDOWN_TIMEOUT_EXIT  # only the watchdog exits so
    assert b"shutdown_timeout" in done.stdout + done.stderr
