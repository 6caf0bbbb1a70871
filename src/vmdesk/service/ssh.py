"""Logging in to a running VM over SSH (`vmdesk ssh`): through the NAT port forward to the
guest's port 22, as the user the VM's cloud-init seed made, with the system's ``ssh``.

Host keys: each VM's are remembered in its own bundle (``ssh/known_hosts``) under the
name ``vmdesk-UUID``, trusted on first use (``StrictHostKeyChecking=accept-new``), rather
than not checked at all or kept in the user's ``~/.ssh/known_hosts``:

- the user's own file never collects ``[127.0.0.1]:PORT`` entries, which would clash
  whenever another VM takes a port over (ssh's "REMOTE HOST IDENTIFICATION HAS CHANGED");
- a VM's keys are checked from its second login on, so something else answering on its
  port later (another VM, another program) is refused, as ssh refuses any changed host;
- a clone has a new UUID (and, as a new cloud-init instance, new host keys): it starts
  afresh under its own name, whatever file it copied.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdesk.core.errors import BundleError, Conflict, HostToolMissing, NotFound
from vmdesk.core.library import Library
from vmdesk.service.library import find, name_of

GUEST_PORT = 22
KNOWN_HOSTS = "ssh/known_hosts"  # inside the bundle


@dataclass(frozen=True)
class Login:
    """Where and as whom to log in to one VM."""

    vm: str
    uuid: str
    user: str
    host: str
    port: int
    known_hosts: Path

    @property
    def host_key_alias(self) -> str:
        return f"vmdesk-{self.uuid}"

    def argv(self, command: Sequence[str] = (), *, identity: Path | None = None) -> list[str]:
        """The ``ssh`` command line; ``command`` runs instead of a login shell (passed to
        ssh as it is: the guest's shell reads it, as with any ssh command)."""
        argv = [
            _ssh(), "-p", str(self.port),
            "-o", f"HostKeyAlias={self.host_key_alias}",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", "CheckHostIP=no",  # the address is always the loopback one: by alias only
        ]  # fmt: skip
        if identity is not None:
            argv += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
        # "--" ends ssh's options, so that nothing in the command is read as one.
        return [*argv, "--", f"{self.user}@{self.host}", *command]


def login(library: Library, ref: str, user: str | None = None) -> Login:
    """How to log in to the running VM ``ref``: its SSH forward and its cloud-init user
    (``user`` instead, when given). The bundle's known_hosts folder is made here."""
    from vmdesk.supervisor import client
    from vmdesk.supervisor import status as vmstatus

    bundle = find(library, ref)
    name = name_of(bundle)
    data = bundle.load_data()
    host, port = ssh_forward(name, data)
    state = vmstatus.derive(bundle.path)["status"]
    if state != "running":
        raise client.NotRunning(
            f"VM {name!r} is {state}: SSH needs it running",
            hint=f"start it: `vmdesk start {name} --wait-ready`, then `vmdesk ssh {name}`",
        )
    known_hosts = bundle.path / KNOWN_HOSTS
    known_hosts.parent.mkdir(mode=0o700, exist_ok=True)
    return Login(name, str(data["uuid"]), user or seed_user(bundle.path, name), host, port,
                 known_hosts)  # fmt: skip


def ssh_forward(name: str, data: dict[str, Any]) -> tuple[str, int]:
    """The host address and port that a VM description forwards to the guest's SSH port."""
    for nic in data.get("nics") or []:
        for fwd in nic.get("forwards") or []:
            if fwd.get("protocol") == "tcp" and fwd.get("guest_port") == GUEST_PORT:
                return _reachable(str(fwd.get("host_address") or "127.0.0.1")), fwd["host_port"]
    raise Conflict(
        f"VM {name!r} forwards no host port to its SSH port ({GUEST_PORT})",
        hint=f"add one while it is stopped: `vmdesk stop {name} && vmdesk edit {name} "
        f"--forward tcp:2222:{GUEST_PORT}` (any free host port)",
    )


def _reachable(address: str) -> str:
    """Where to connect for a forward listening on ``address``: a wildcard address listens
    on the loopback one too."""
    return "127.0.0.1" if ipaddress.ip_address(address).is_unspecified else address


def seed_user(bundle_path: Path, name: str) -> str:
    """The user that the VM's cloud-init seed makes (its first user with a name)."""
    import yaml

    from vmdesk.images import cloud_init
    from vmdesk.service.image_vms import SEED

    hint = f"name the user: `vmdesk ssh {name} --user NAME`"
    try:
        seed = cloud_init.read_seed(bundle_path / SEED)
    except NotFound:
        raise NotFound(
            f"VM {name!r} has no cloud-init seed, so its user is not known here", hint=hint
        ) from None
    try:
        user_data = yaml.safe_load(seed.user_data)
    except yaml.YAMLError:
        raise BundleError(f"the cloud-init seed of VM {name!r} is not YAML", hint=hint) from None
    users = user_data.get("users") if isinstance(user_data, dict) else None
    for entry in users if isinstance(users, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            return str(entry["name"])
    raise NotFound(f"the cloud-init seed of VM {name!r} makes no user", hint=hint)


def _ssh() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise HostToolMissing(
            "ssh was not found on this host",
            hint="install OpenSSH's client: `sudo apt-get install openssh-client` "
            "(or `make setup`)",
        )
    return found
