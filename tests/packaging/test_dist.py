"""The wheel and sdist as a user gets them: built by scripts/build-dist.sh (twice, the same
bytes), each installed into a fresh venv with pip, where `vmdesk demo` boots the tiny
guest and the web UI's browser libraries are there to serve."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]


def _build(into: Path) -> dict[str, str]:
    subprocess.run(["bash", str(ROOT / "scripts" / "build-dist.sh"), str(into)], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in into.iterdir()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    first, second = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("again")
    built = _build(first)
    assert sorted(built) == ["vmdesk-0.1.0-py3-none-any.whl", "vmdesk-0.1.0.tar.gz"]
    assert _build(second) == built, "the same checkout builds the same bytes"
    return first


@pytest.mark.parametrize("artifact", ["vmdesk-0.1.0-py3-none-any.whl", "vmdesk-0.1.0.tar.gz"])
def test_an_installed_wheel_or_sdist_boots_the_demo(dist: Path, artifact: str,
                                                    tmp_path: Path) -> None:  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(dist / artifact)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    vendored = list(venv.glob("lib/python3*/site-packages/vmdesk/web/static/vendor/*/"))
    assert {p.name for p in vendored} >= {"novnc", "xterm"}, vendored
    env = {**os.environ, "VMDESK_HOME": str(tmp_path / "library"), "VMDESK_ACCEL": "auto"}
    env.pop("VIRTUAL_ENV", None)
    vmdesk = str(venv / "bin" / "vmdesk")
    version = subprocess.run([vmdesk, "--version"], capture_output=True, text=True, env=env,
                             check=True, cwd=tmp_path)  # fmt: skip
    assert "0.1.0" in version.stdout
    demo = subprocess.run([vmdesk, "demo", "--arch", "x86_64"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "guest ready" in demo.stdout and "the guest powered itself off" in demo.stdout
