"""The SSH connection of qemu+ssh hosts is shared (the wrapper libvirt runs instead of ssh);
other URIs, and one naming its own ssh command, are left as they are."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from vmdesk.engines.libvirt import connection, listing


def test_an_ssh_uri_gets_the_sharing_wrapper_and_others_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMDESK_CACHE", str(tmp_path))
    uri = connection.shared_ssh("qemu+ssh://me@lab:2222/system?keyfile=/k&no_verify=1")
    query = parse_qs(urlsplit(uri).query)
    assert query["keyfile"] == ["/k"] and query["no_verify"] == ["1"]
    wrapper = Path(query["command"][0])
    assert wrapper == tmp_path / "tools" / "ssh-mux"
    assert os.access(wrapper, os.X_OK)
    done = subprocess.run(["sh", "-n", str(wrapper)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr  # a shell script the shell can read
    assert "ControlMaster=auto" in wrapper.read_text()
    for same in ("qemu:///system", "qemu+ssh://lab/system?command=/my/ssh", "qemu+tcp://l/system"):
        assert connection.shared_ssh(same) == same


def test_a_list_row_is_read_from_our_metadata_element_alone() -> None:
    element = ('<vm><config>{"name": "dev", "arch": "x86_64", "cpus": 2, "memory": "2GiB",'
               ' "isolation": "isolated", "uuid": "u"}</config></vm>')  # fmt: skip
    row = listing._row("lab", element, "running")
    assert row == {"name": "dev", "host": "lab", "status": "running", "arch": "x86_64",
                   "cpus": 2, "memory": "2GiB", "engine": "libvirt", "isolation": "isolated",
                   "uuid": "u"}  # fmt: skip
    assert listing._row("lab", "<vm><config>not json</config></vm>", "running") is None
    assert listing._row("lab", "<not-closed", "running") is None


def test_a_failed_ssh_login_is_one_line_saying_so_without_sshs_notes() -> None:
    import libvirt

    from vmdesk.core.errors import HostError
    from vmdesk.engines.libvirt import connection

    said = ("Cannot recv data: Warning: Permanently added '[lab]:22' (ED25519) to the list "
            "of known hosts.\r\nme@lab: Permission denied (publickey).: Connection reset by "
            "peer")  # fmt: skip
    error = connection.translate(libvirt.libvirtError(said), "host lab")
    assert isinstance(error, HostError)
    assert error.message.startswith("host lab: the host refused the SSH login (")
    assert "Permanently" not in error.message and "\n" not in error.message
    assert error.hint is not None and "ssh-add" in error.hint
