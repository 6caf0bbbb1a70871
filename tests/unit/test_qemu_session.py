"""The QEMU session's errors without a QEMU: QMP refusals keep QEMU's error class, hints
come from what is known about the VM, and state clashes are Conflicts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ExecuteError
from qemu.qmp.message import Message
from qemu.qmp.models import ErrorResponse

from vmdesk.core.config import VMConfig, from_dict
from vmdesk.core.errors import Conflict, EngineError, QMPError
from vmdesk.engines.qemu.session import QemuSession

LINUX = {"kind": "linux", "kernel": "boot/vmlinuz"}


class RefusingQMP:
    """Stands in for QMPClient: QEMU refuses every command with ``error_class``."""

    def __init__(self, error_class: str, desc: str) -> None:
        self.reply = Message({"error": {"class": error_class, "desc": desc}})

    async def execute(self, command: str, arguments: Any = None) -> Any:
        raise ExecuteError(ErrorResponse(self.reply), Message({"execute": command}), self.reply)


def _session(tmp_path: Path, virtiofs: list[str], *share_modes: str) -> QemuSession:
    shares = []
    for index, mode in enumerate(share_modes):
        folder = tmp_path / f"s{index}"
        folder.mkdir(exist_ok=True)
        shares.append({"tag": f"s{index}", "path": str(folder), "mode": mode})
    config: VMConfig = from_dict({"name": "vm", "arch": "x86_64", "boot": LINUX, "shares": shares})
    session = QemuSession(config, tmp_path, tmp_path)
    session._virtiofs = virtiofs
    session._9p = [s.tag for s in config.shares if s.tag not in virtiofs]
    return session


def _refused(session: QemuSession, command: str, arguments: Any = None) -> QMPError:
    session._qmp = RefusingQMP("GenericError", "any text at all")  # type: ignore[assignment]
    with pytest.raises(QMPError) as err:
        asyncio.run(session._execute(command, arguments))
    return err.value


def test_a_refusal_keeps_qemus_error_class_and_message(tmp_path: Path) -> None:
    error = _refused(_session(tmp_path, []), "device_del", {"id": "nope"})
    assert error.error_class == "GenericError"
    assert error.message == "QEMU refused device_del: any text at all"
    assert error.hint is None


@pytest.mark.parametrize("command", ["migrate", "snapshot-save"])
def test_a_refused_save_with_9p_shares_says_to_unmount_them(tmp_path: Path, command: str) -> None:
    # decided from the VM's shares and the command, whatever QEMU's words were
    hint = _refused(_session(tmp_path, [], "9p"), command).hint
    assert hint is not None and "unmount the 9p shared folder" in hint


def test_a_refused_save_without_9p_shares_has_no_unmount_hint(tmp_path: Path) -> None:
    assert _refused(_session(tmp_path, ["s0"], "virtiofs"), "migrate").hint is None
    assert _refused(_session(tmp_path, [], "9p"), "stop").hint is None


def test_saving_with_virtiofs_shares_is_a_conflict_with_the_alternatives(tmp_path: Path) -> None:
    session = _session(tmp_path, ["s0"], "virtiofs")
    session._qmp = RefusingQMP("GenericError", "unused")  # type: ignore[assignment]
    with pytest.raises(Conflict) as err:
        asyncio.run(session.save_snapshot("snap"))
    assert err.value.exit_code == 5
    assert "VirtioFS shared folder(s) 's0'" in err.value.message
    assert "--disk-only" in str(err.value.hint)
    with pytest.raises(Conflict):
        asyncio.run(session.save_state(tmp_path / "state"))


def test_a_lost_connection_is_an_engine_error(tmp_path: Path) -> None:
    class Gone:
        async def execute(self, command: str, arguments: Any = None) -> Any:
            raise ConnectionResetError("gone")

    session = _session(tmp_path, [])
    session._qmp = Gone()  # type: ignore[assignment]
    with pytest.raises(EngineError) as err:
        asyncio.run(session.status())
    assert not isinstance(err.value, QMPError)
