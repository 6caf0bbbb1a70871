"""What VM-Desk does with a VM on a libvirt host today, as data: what is not listed true
here is shown as unavailable for such VMs (`show`, the API), never as on."""

from __future__ import annotations

from vmdesk.engines.base import Capabilities


def capabilities() -> Capabilities:
    return Capabilities(
        engine="libvirt",
        arches=("x86_64", "aarch64"),
        accelerators=("kvm", "tcg"),
        usb_passthrough=True,  # <hostdev>: a device of the VM's host, not of this desk
        share_kinds=("virtiofs", "9p"),  # folders of the VM's host
        snapshots_with_ram=False,
        save_state=False,
        vnc=False,  # the host's VNC socket is not relayed to the web app yet
        # the agents' channels are in the domain, but nothing on the desk speaks on them yet
        clipboard=False,
        guest_agent=False,
        balloon=False,
    )
