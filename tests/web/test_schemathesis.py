"""Requests generated from the OpenAPI spec (valid and invalid ones) never get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.web.conftest import TOKEN
from vmdesk.core import hosts
from vmdesk.core.errors import VMDeskError
from vmdesk.service import library as service_library
from vmdesk.service import vms
from vmdesk.web.app import create_app

HEADERS = {"authorization": f"Bearer {TOKEN}", "host": "127.0.0.1:8765"}
# Actions that would boot a guest or save its RAM if a generated name hit a real VM.
BOOTING = ("/start", "/suspend", "/resume", "/reboot")


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    root = tmp_path_factory.mktemp("schemathesis") / "library"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VMDESK_HOME", str(root))
        env.setenv("VMDESK_ACCEL", "tcg")
        # one real VM, so that generated names have something to find besides nothing
        vms.create(service_library.open(root), {"name": "a", "cpus": 1, "memory": "128MiB"})
        app = create_app(TOKEN, root)
        loaded = schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=HEADERS)
        yield loaded
    assert Path(root).is_dir()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_gets_a_server_error(case: schemathesis.Case) -> None:
    if case.path == "/api/events":  # a stream that never ends: see tests/web/test_vm_web.py
        return
    if case.path.endswith(BOOTING) or (case.method == "POST" and case.path == "/api/vms"):
        if isinstance(case.body, dict):  # a VM may be created, never started
            case.body.pop("image", None)
            case.body["start"] = False
        if case.path.endswith(BOOTING):
            return
    if _dials_a_host(case):  # its 502 is the other host's answer (tests/libvirt has it)
        return
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])


def _dials_a_host(case: schemathesis.Case) -> bool:
    """Whether adding this host would go as far as dialling its URI."""
    if (case.method, case.path) != ("POST", "/api/hosts") or not isinstance(case.body, dict):
        return False
    try:
        hosts.check_name(str(case.body.get("name")))
        hosts.check_uri(str(case.body.get("uri")))
    except VMDeskError:
        return False
    return True
