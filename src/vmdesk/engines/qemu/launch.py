"""Planning a QEMU launch: everything decided before QEMU runs, as a launch spec.

Synchronous and free of asyncio and QMP: the accelerator, the UEFI firmware, the helper
daemons (swtpm, a virtiofsd per VirtioFS share, a passt per NAT NIC where passt is
installed), the bridged NICs' taps, the files whose change makes the plan stale, and the
command line. The result is plain JSON data that :mod:`spawn` runs and the supervisor may
cache and replay (see vmdesk.supervisor.launch_plan). Choosing it has no side effects
beyond creating missing UEFI variables and the TPM state directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from vmdesk.core.config import Share, VMConfig
from vmdesk.core.errors import HostToolMissing, NotFound
from vmdesk.core.layout import Layout, Sockets
from vmdesk.engines.qemu import accel as qemu_accel
from vmdesk.engines.qemu import disk_io, spawn
from vmdesk.engines.qemu import doctor as qemu_doctor
from vmdesk.engines.qemu import firmware as qemu_firmware
from vmdesk.engines.qemu.binaries import system_binary
from vmdesk.engines.qemu.disk_io import DiskIO
from vmdesk.engines.qemu.vm_argv import Firmware, Runtime, build_vm, has_spice_agent
from vmdesk.networking import bridges, passt

# virtiofsd tuning, measured against 9p by bench/share_bench.py. cache=always buys nothing
# measurable over auto here; a thread pool is off because Debian 12's virtiofsd's seccomp
# filter kills its pool threads (they call sched_getaffinity, which the filter lacks).
VIRTIOFS_CACHE = "auto"
VIRTIOFS_THREADS = 0

Helper = dict[str, Any]  # one helper daemon of a spec (see spawn.py)


def launch_spec(config: VMConfig, files: Layout, sockets: Sockets) -> dict[str, Any]:
    """What to run for ``config``, as JSON data (see spawn.py)."""
    choice = qemu_accel.choose(config.arch)
    firmware = None
    if config.boot.kind == "uefi":
        firmware = qemu_firmware.for_vm(config.arch, config.boot.secure_boot, files.nvram)
    serial_log = files.serial_log if config.serial.enabled and config.serial.log else None
    virtiofsd = qemu_doctor.find_virtiofsd() if sys.platform == "linux" else None
    modes = {share.tag: share_mode(config, share, virtiofsd) for share in config.shares}
    taps, bridge_helper = bridges.plan(config.name, config.nics)
    nat = nat_choices(config, emulated=choice.accel == "tcg")
    binary = system_binary(config.arch)
    runtime = Runtime(
        accel=choice.accel,
        qmp_fd=spawn.QMP_FD,
        serial_fd=spawn.SERIAL_FD if config.serial.enabled else None,
        vnc_socket=sockets.vnc if config.display.vnc else None,
        firmware=firmware,
        serial_log=serial_log,
        tpm_fd=spawn.TPM_FD if config.tpm else None,
        virtiofs_fds={
            share.tag: spawn.SHARE_FD + index
            for index, share in enumerate(config.shares)
            if modes[share.tag] == "virtiofs"
        },
        tap_fds={index: spawn.TAP_FD + index for index in taps},
        bridge_helper=bridge_helper,
        nat_fds={i: spawn.NAT_FD + i for i, c in nat.items() if c.backend == "passt"},
        guest_agent_fd=spawn.GUEST_AGENT_FD if config.guest_agent else None,
        spice_agent_fd=spawn.SPICE_AGENT_FD if has_spice_agent(config) else None,
        disk_io=disk_verdicts(config, files, binary),
    )
    swtpm = swtpm_helper(config, files) if config.tpm else None
    helpers = [] if swtpm is None else [swtpm]
    for index, share in enumerate(config.shares):
        if modes[share.tag] == "virtiofs":
            assert virtiofsd is not None
            helpers.append(virtiofsd_helper(files, virtiofsd, index, share))
    for index in runtime.nat_fds:
        helpers.append(passt_helper(config, files, index, nat[index]))
    argv = [str(binary), *build_vm(config, files.root, runtime)]
    state = files.suspended_state
    if state.exists():  # resume a suspended VM: QEMU runs the guest once it is read
        argv += ["-incoming", "exec:cat " + shlex.quote(str(state))]
    listen = {str(spawn.QMP_FD): str(sockets.qmp)}
    if config.serial.enabled:
        listen[str(spawn.SERIAL_FD)] = str(sockets.serial)
    if runtime.guest_agent_fd is not None:
        listen[str(runtime.guest_agent_fd)] = str(sockets.guest_agent)
    if runtime.spice_agent_fd is not None:
        listen[str(runtime.spice_agent_fd)] = str(sockets.spice_agent)
    return {
        "engine": "qemu",
        "argv": argv,
        "listen": listen,
        "rotate": [str(serial_log)] if serial_log else [],
        "remove": [str(sockets.vnc)],
        "log": str(files.engine_log),
        "helpers": helpers,
        "taps": [{"bridge": config.nics[i].bridge, "engine_fd": spawn.TAP_FD + i} for i in taps],
        "watch": _watch(config, binary, firmware, swtpm, bool(nat)),
        "accel_reason": f"{choice.accel}: {choice.reason}",
        "virtiofs": sorted(runtime.virtiofs_fds),
        "disk_io": [
            {"file": disk.file, **io.to_json()}
            for disk, io in zip(config.disks, runtime.disk_io, strict=True)
        ],
        # what each NAT NIC runs on (`vmdesk show` says it)
        "nat": [{"nic": i, "backend": c.backend, "reason": c.reason} for i, c in nat.items()],
    }


def nat_choices(
    config: VMConfig, path: str | None = None, *, emulated: bool = False
) -> dict[int, passt.Choice]:
    """NIC index -> the backend of each NAT NIC: passt where it is on ``path`` (default:
    PATH) unless the NIC asks for slirp or the guest is ``emulated`` (TCG) and the NIC
    does not ask for passt, else QEMU's slirp (see networking/passt.py)."""
    nics = [(i, nic) for i, nic in enumerate(config.nics) if nic.mode == "nat"]
    if not nics:
        return {}
    found = passt.find(path) if sys.platform == "linux" else None
    return {i: passt.choose(i, nic, found, config.name, emulated=emulated) for i, nic in nics}


def passt_helper(config: VMConfig, files: Layout, index: int, choice: passt.Choice) -> Helper:
    """passt for NAT NIC ``index``, on one end of a socket pair whose other end QEMU has
    (so neither waits for the other, and passt exits as soon as QEMU closes it). Its
    warnings and errors go to logs/passt-nicN.log. No pid file: it runs in the foreground
    as our child, and run as root it changes to user nobody, who may not write in the
    bundle."""
    assert choice.binary is not None
    log = files.logs / f"passt-nic{index}.log"
    argv = passt.argv(choice.binary, config.nics[index].forwards, fd=spawn.HELPER_FD)
    return {"argv": argv, "log": str(log), "engine_fd": spawn.NAT_FD + index}


def disk_verdicts(config: VMConfig, files: Layout, binary: Path) -> tuple[DiskIO, ...]:
    """How each disk's I/O runs on this host (probed: see disk_io.py)."""
    wants_uring = any(disk.aio in ("auto", "io_uring") for disk in config.disks)
    io_uring = wants_uring and disk_io.io_uring_usable(binary)
    return tuple(disk_io.choose(disk, files.root / disk.file, io_uring) for disk in config.disks)


def _watch(
    config: VMConfig, binary: Path, firmware: Firmware | None, swtpm: Helper | None, nat: bool
) -> list[str]:
    """The files whose change makes a cached spec stale."""
    watch = [str(binary), str(qemu_accel.probe_cache_path(config.arch)), "/dev/kvm"]
    if firmware is not None:
        watch += [str(firmware.code), str(firmware.vars)]
        watch += [str(path) for path in qemu_firmware.watch_paths()]
    if swtpm is not None:
        watch.append(swtpm["argv"][0])
    # Installing or removing virtiofsd changes what "auto" shares become.
    watch += [str(path) for path in qemu_doctor.VIRTIOFSD_PLACES]
    # Installing or removing passt anywhere on PATH changes what "auto" NAT NICs get.
    if nat:
        watch += [str(path) for path in passt.places()]
    if any(nic.mode == "bridged" for nic in config.nics):
        watch += [str(path) for path in bridges.BRIDGE_HELPERS]
    return watch


def swtpm_helper(config: VMConfig, files: Layout) -> Helper:
    """swtpm for this VM: TPM 2.0 state in the bundle's tpm/, its control channel on a
    socket pair with QEMU, and gone when QEMU closes that channel (--terminate)."""
    binary = shutil.which("swtpm")
    if binary is None:
        raise HostToolMissing(
            "swtpm (TPM emulation) was not found",
            hint="install it: `sudo apt-get install swtpm swtpm-tools` (or `make setup`), "
            f"or turn the TPM off: `vmdesk edit {config.name} --no-tpm`",
        )
    files.tpm.mkdir(exist_ok=True)
    log = files.logs / "swtpm.log"
    argv = [
        binary, "socket", "--tpm2", "--tpmstate", f"dir={files.tpm}",
        "--ctrl", f"type=unixio,clientfd={spawn.HELPER_FD}", "--terminate",
        "--log", f"file={log},level=1",
    ]  # fmt: skip
    return {"argv": argv, "log": str(log), "engine_fd": spawn.TPM_FD}


def share_mode(config: VMConfig, share: Share, virtiofsd: Path | None) -> str:
    """How ``share`` is served: "virtiofs" or "9p" ("auto" takes VirtioFS when there is a
    virtiofsd to serve it)."""
    if not os.path.isdir(share.path):
        raise NotFound(
            f"shared folder {share.tag!r}: {share.path} is not a folder on this host (any more)",
            hint=f"create it, or remove the share: `vmdesk edit {config.name} "
            f"--remove-share {share.tag}`",
        )
    if share.mode != "auto":
        if share.mode == "virtiofs" and virtiofsd is None:
            raise HostToolMissing(
                f"shared folder {share.tag!r} uses VirtioFS, and virtiofsd was not found",
                hint="install it (`sudo apt-get install qemu-system-common` on Debian 12, "
                "the virtiofsd package elsewhere), or serve the folder over 9p: "
                f"`vmdesk edit {config.name} --remove-share {share.tag} "
                f"--share {share.path}:{share.tag}:9p`",
            )
        return share.mode
    return "virtiofs" if virtiofsd is not None else "9p"


def virtiofsd_helper(files: Layout, binary: Path, index: int, share: Share) -> Helper:
    """virtiofsd for one share, accepting QEMU on the socket it inherits. It needs
    namespaces of its own: a non-root user gets them inside a user namespace, where
    the user is root (and files the guest creates belong to the user). A read-only
    share is a read-only bind mount in a mount namespace, so the host enforces it."""
    log = files.logs / f"virtiofsd-{share.tag}.log"
    # virtiofsd refuses a symlink as its source; the isolation policy judged (and the
    # launch plan watches) where the path resolves to, so serve exactly that
    source = os.path.realpath(share.path)
    daemon = [
        str(binary), f"--fd={spawn.HELPER_FD}", "-o", f"source={source}",
        "-o", f"cache={VIRTIOFS_CACHE}", f"--thread-pool-size={VIRTIOFS_THREADS}",
    ]  # fmt: skip
    wrapper: list[str] = []
    if os.geteuid() != 0:
        wrapper += ["--user", "--map-root-user"]
    if share.read_only:
        wrapper += ["--mount", "--propagation", "private"]
        daemon = ["sh", "-c", 'mount --bind -o ro -- "$0" "$0" && exec "$@"', source,
                  *daemon]  # fmt: skip
    if wrapper:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise HostToolMissing(
                "unshare (util-linux) was not found; virtiofsd needs it here",
                hint="install util-linux, or serve the folder over 9p (`:9p`)",
            )
        daemon = [unshare, *wrapper, "--", *daemon]
    return {"argv": daemon, "log": str(log), "engine_fd": spawn.SHARE_FD + index,
            "socket": "listen"}  # fmt: skip
