"""What a test that waited in vain for a desktop guest's agents prints: the supervisor's
view, the ends of the VM's logs and, when qemu-ga answers, what the guest's side shows (its
logind sessions, the SPICE agent's processes and their journal). A flaky wait is
diagnosed from one CI run's output, which is all there is of a fresh machine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from vmdesk.core.layout import Layout, bundle_dir_name

# Inside the guest: which session is active on the seat (spice-vdagentd opens its port only
# for an agent in the active user session), which agent processes run, what they logged.
GUEST_SCRIPT = r"""
loginctl list-sessions --no-legend
loginctl show-seat seat0 -p ActiveSession
for s in $(loginctl list-sessions --no-legend | awk '{print $1}'); do
    loginctl show-session "$s" -p Name -p Type -p Class -p State -p Active
done
systemctl is-active spice-vdagentd.socket spice-vdagentd.service lightdm.service
ps -eo pid,etimes,args | grep -E 'vdagent|xfce4-session|Xorg|lightdm' | grep -v grep
journalctl -b -o short-monotonic --no-pager \
    | grep -iE 'vdagent|lightdm|xfce|session-|Xorg' | grep -v 'max clipboard' | tail -40
"""


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({exc})"
    return "\n".join(text.splitlines()[-lines:])


def _vmdesk(env: Mapping[str, str], *args: str) -> str:
    try:
        done = subprocess.run([sys.executable, "-m", "vmdesk.cli.main", *args], env=dict(env),
                              capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "(no answer within 90 s)"
    return (done.stdout + done.stderr).strip()


def agents_report(env: Mapping[str, str], name: str) -> str:
    """The report for VM ``name`` of the library ``env["VMDESK_HOME"]`` names."""
    layout = Layout(Path(env["VMDESK_HOME"]) / bundle_dir_name(name))
    parts = [
        ("status", _vmdesk(env, "status", name, "--json")),
        ("supervisor.log", _tail(layout.supervisor_log, 30)),
        ("serial.log", _tail(layout.serial_log, 25)),
        ("in the guest", _vmdesk(env, "exec", name, "--", "sh", "-c", GUEST_SCRIPT)),
    ]
    return "\n".join(f"--- {title}\n{text}" for title, text in parts)
