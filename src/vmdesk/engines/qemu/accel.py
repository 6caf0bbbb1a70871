"""Choosing QEMU's accelerator: KVM, HVF or TCG emulation.

A working ``/dev/kvm`` is not proof that KVM runs guests (nested virtualization can
hang them or fail with "KVM internal error"), so on Linux KVM is chosen only after a
bounded real boot of the tiny guest. The probe's verdict is cached until the host
reboots or QEMU changes. The decision itself is a pure function of the facts.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vmdesk.core import paths, processes
from vmdesk.core.arch import Arch, host_arch
from vmdesk.core.errors import EngineError, VMDeskError
from vmdesk.engines.qemu import binaries
from vmdesk.engines.qemu.boot_argv import BootSpec
from vmdesk.engines.qemu.options import ACCELS, Accel

ENV_OVERRIDE = "VMDESK_ACCEL"
PROBE_TIMEOUT = 15.0  # a KVM boot of the tiny guest takes about a second
_KVM_GET_API_VERSION = 0xAE00
_KVM_API_VERSION = 12


@dataclass(frozen=True)
class HostFacts:
    system: str  # platform.system(): "Linux", "Darwin", ...
    arch: Arch | None
    kvm_problem: str | None  # None when /dev/kvm opens and speaks the KVM API
    hvf: bool


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


@dataclass(frozen=True)
class AccelChoice:
    accel: Accel
    reason: str


def parse_override(value: str | None) -> Accel | None:
    """``--accel`` / ``$VMDESK_ACCEL``: kvm, hvf, tcg, or auto (None)."""
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    accel = value.strip().lower()
    for known in ACCELS:
        if accel == known:
            return known
    raise VMDeskError(
        f"unknown accelerator {value!r}", hint="use one of: auto, " + ", ".join(ACCELS)
    )


def needs_probe(guest: Arch, host: HostFacts, override: Accel | None) -> bool:
    """Whether :func:`decide` needs a KVM probe result to choose."""
    return (
        override is None
        and host.system == "Linux"
        and host.arch == guest
        and host.kvm_problem is None
    )


def decide(
    guest: Arch, host: HostFacts, override: Accel | None, probe: ProbeResult | None
) -> AccelChoice:
    """Pick the accelerator for a ``guest`` VM and say why."""
    if override is not None:
        if override == "kvm" and host.kvm_problem is not None:
            raise VMDeskError(
                f"KVM was requested but {host.kvm_problem}",
                hint="use --accel auto (or tcg), or fix access to /dev/kvm",
            )
        if override == "hvf" and not host.hvf:
            raise VMDeskError(
                "HVF was requested but Hypervisor.framework is not available here",
                hint="HVF exists only on macOS; use --accel auto",
            )
        if override != "tcg" and host.arch != guest:
            raise VMDeskError(
                f"{override.upper()} runs only guests of the host's architecture "
                f"({host.arch}), not {guest}",
                hint="use --accel tcg (emulation) or a guest of the host's architecture",
            )
        return AccelChoice(override, f"requested with --accel/{ENV_OVERRIDE}")
    if host.arch != guest:
        return AccelChoice("tcg", f"the guest is {guest} and the host {host.arch}: emulated")
    if host.system == "Darwin":
        if host.hvf:
            return AccelChoice("hvf", "Hypervisor.framework is available")
        return AccelChoice("tcg", "Hypervisor.framework is not available on this Mac")
    if host.system != "Linux":
        return AccelChoice("tcg", f"no hardware accelerator support on {host.system}")
    if host.kvm_problem is not None:
        return AccelChoice("tcg", f"KVM is not usable: {host.kvm_problem}")
    if probe is None:
        raise ValueError("decide() needs a KVM probe result here; see needs_probe()")
    if probe.ok:
        return AccelChoice("kvm", f"a KVM probe guest booted ({probe.detail})")
    return AccelChoice("tcg", f"/dev/kvm is present but a KVM probe guest failed ({probe.detail})")


# -- gathering the facts (side effects from here on) ----------------------------------


def kvm_problem(device: Path = Path("/dev/kvm")) -> str | None:
    """Why ``device`` cannot be used for KVM, or None when it answers the KVM API."""
    if not device.exists():
        return f"{device} does not exist (no KVM in this kernel, or virtualization is off)"
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        return f"no permission to open {device} (add your user to the 'kvm' group)"
    except OSError as exc:
        return f"{device} cannot be opened: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
    except OSError as exc:
        return f"{device} does not answer the KVM API: {exc.strerror}"
    finally:
        os.close(fd)
    if version != _KVM_API_VERSION:
        return f"{device} speaks KVM API {version}, not {_KVM_API_VERSION}"
    return None


def _hvf_available() -> bool:
    if platform.system() != "Darwin":
        return False
    out = subprocess.run(
        ["sysctl", "-n", "kern.hv_support"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() == "1"


def host_facts() -> HostFacts:
    system = platform.system()
    return HostFacts(
        system=system,
        arch=host_arch(),
        kvm_problem=kvm_problem() if system == "Linux" else "not a Linux host",
        hvf=_hvf_available(),
    )


def probe_kvm(arch: Arch, timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """Boot the tiny guest under KVM and report whether it reached userspace."""
    # Imported here: the probe is the only part of this module that needs a guest image.
    from vmdesk.engines.qemu.process import QemuProcess
    from vmdesk.images import tiny_linux

    image = tiny_linux.build(arch)
    spec = BootSpec(
        arch=arch, accel="kvm", kernel=image.kernel, initrd=image.initrd,
        cmdline=image.cmdline(), nic=False,
    )  # fmt: skip
    try:
        with QemuProcess(spec) as vm:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    vm.wait_serial(tiny_linux.READY_PATTERN, 0.5)
                    return ProbeResult(True, f"ready in {time.monotonic() - vm.started_at:.1f} s")
                except EngineError as exc:
                    if vm.alive():
                        status = vm.status()
                        if status in ("internal-error", "guest-panicked", "shutdown"):
                            return ProbeResult(False, f"QEMU reported {status}")
                    else:
                        return ProbeResult(
                            False, f"QEMU exited: {_first_error(vm.log_tail() or str(exc))}"
                        )
                if time.monotonic() > deadline:
                    return ProbeResult(False, f"no sign of life within {timeout:g} s")
    except EngineError as exc:
        return ProbeResult(False, _first_error(str(exc)))


def _first_error(text: str) -> str:
    """QEMU's first complaint, without the program-name prefix."""
    first = text.removeprefix("QEMU did not start: ").split(" | ")[0]
    return first.split(": ", 1)[1] if first.startswith("qemu-system-") else first


def _probe_cache_key(arch: Arch) -> str:
    boot_id = processes.boot_id() or "unknown"
    qemu = ".".join(map(str, binaries.version(binaries.system_binary(arch))))
    return f"{boot_id}/{platform.release()}/qemu-{qemu}"


def probe_cache_path(arch: Arch) -> Path:
    return paths.cache_dir() / "accel" / f"kvm-probe-{arch}.json"


def cached_probe_kvm(arch: Arch, *, refresh: bool = False) -> tuple[ProbeResult, bool]:
    """The KVM probe verdict for this boot of the host; (result, came from the cache)."""
    cache = probe_cache_path(arch)
    key = _probe_cache_key(arch)
    if not refresh:
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                return ProbeResult(bool(saved["ok"]), str(saved["detail"])), True
        except (OSError, ValueError, KeyError):
            pass
    result = probe_kvm(arch)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, **asdict(result)}))
    tmp.replace(cache)
    return result, False


def choose(guest: Arch, override: str | None = None, *, refresh: bool = False) -> AccelChoice:
    """The accelerator for a ``guest`` VM on this host (probing KVM when needed)."""
    wanted = parse_override(override if override is not None else os.environ.get(ENV_OVERRIDE))
    host = host_facts()
    probe = None
    if needs_probe(guest, host, wanted):
        probe, cached = cached_probe_kvm(guest, refresh=refresh)
        if cached:
            probe = ProbeResult(probe.ok, probe.detail + ", cached for this boot")
    return decide(guest, host, wanted, probe)
