"""Hostile CLI arguments: sizes, counts, ports, MACs, names (unicode, 255 bytes, dots,
slashes, dashes) and paths (`..`, symlinks, directories, missing files) given to the
commands that create and change VMs. Whatever comes, `vmdesk` either does it or refuses
with an error line and a hint (click's own usage errors name the option and point to
--help), never with a traceback; and the VM already there still loads with its disk
intact. The CLI runs in this process (its `main`, as the `vmdesk` script calls it), so
thousands of cases fit in seconds; 150 in `make test`, 3,000 in the full campaign."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.reliability import campaign
from tests.reliability.library_state import Library, disk, fill, holds, problems_of_disks
from vmdesk.cli import main as cli_main

EXAMPLES = campaign.cases(quick=150, full=3_000)
pytestmark = pytest.mark.timeout(120 + EXAMPLES // 3)  # a case takes 0.1 s or so

SIZES = st.sampled_from(["0", "-1", "1e309", "nan", "99999999999TiB", "1.5.5G", "abc",
                         "\u0661\u0662G", "64M", "1GiB", "0x10M", " 2G", "2 G",
                         "18446744073709551617"])  # fmt: skip
COUNTS = st.sampled_from(["0", "-5", "99999", "1e3", "1", "2", "२", "3.5"])
PORTS = st.sampled_from(
    [
        "0",
        "65536",
        "-1",
        "22",
        "99999999",
        "tcp:2222:22",
        "udp:1:1",
        "sctp:22:22",
        "a:b:c",
        "127.0.0.1:2222:22",
        "[::1]:2222:22",
        "300.1.1.1:22:22",
        "2222:22:22:22",
    ]
)
MACS = st.sampled_from(
    [
        "zz:00:00:00:00:00",
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "52:54:00:12:34:56",
        "52-54-00-12-34-56",
        "525400123456",
        "52:54:00",
    ]
)
NAMES = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "a/b",
            "",
            " ",
            "-x",
            "--help",
            "src",
            "é" * 128,
            "x" * 255,
            "x" * 256,
            "a b",
            "a\tb",
            "CON",
            "new.vmdesk",
            "\u202enew",
            "ок",
        ]
    ),
    st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
)
PATHS = st.sampled_from(
    [
        "../../etc/passwd",
        "/etc/shadow",
        "@link",
        "@dir",
        "@missing",
        "@library",
        "~nobody/x",
        "",
        "-",
        "/dev/zero",
        "/proc/self/mem",
    ]
)


@st.composite
def commands(draw: st.DrawFn) -> list[str]:
    """One command line, from the commands that write VMs, with hostile values."""
    kind = draw(st.sampled_from(["create", "edit", "disk add", "disk grow", "clone", "rename",
                                 "snapshot create", "import", "export"]))  # fmt: skip
    if kind == "create":
        argv = ["create", draw(NAMES), "--boot", "bios"]
        argv += draw(st.sampled_from([[], ["--disk-size", draw(SIZES)], ["--disk", draw(PATHS)]]))
    elif kind == "edit":
        argv = ["edit", draw(st.sampled_from(["src", draw(NAMES)]))]
    elif kind == "disk add":
        return ["disk", "add", "src", "--size", draw(SIZES)]
    elif kind == "disk grow":
        which = draw(st.sampled_from(["0", "9", "-1", "disk0.qcow2", draw(PATHS)]))
        return ["disk", "grow", "src", which, draw(SIZES)]
    elif kind in ("clone", "rename"):
        return [kind, "src", draw(NAMES)]
    elif kind == "snapshot create":
        return ["snapshot", "create", "src", draw(NAMES)]
    elif kind == "import":
        return ["import", draw(PATHS), "--name", draw(NAMES)]
    else:
        return ["export", "src", draw(PATHS)]
    options = draw(st.lists(st.sampled_from(["memory", "cpus", "forward", "mac", "share", "disk"]),
                            max_size=3, unique=True))  # fmt: skip
    values = {"memory": SIZES, "cpus": COUNTS, "forward": PORTS, "mac": MACS, "share": PATHS,
              "disk": PATHS}  # fmt: skip
    for option in options:
        argv += [f"--{option}", draw(values[option])]
    return argv


def _resolve(argv: list[str], work: Path) -> list[str]:
    places = {"@link": work / "link", "@dir": work, "@missing": work / "missing.qcow2",
              "@library": work / "library"}  # fmt: skip
    return [str(places[a]) if a in places else a for a in argv]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`vmdesk ARGV` in this process: its exit code and what it printed to stderr. Anything
    but SystemExit escaping main is a traceback the user would have seen."""
    saved = sys.argv
    sys.argv = ["vmdesk", *argv]
    try:
        cli_main.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return code, capsys.readouterr().err


def _explained(code: int, err: str) -> bool:
    """An error says what went wrong and what to do: an error line and a hint, or click's
    usage error naming the option with its pointer to --help."""
    if code == 0:
        return True
    lines = [line.strip() for line in err.splitlines()]
    ours = any(x.startswith("error:") for x in lines) and any(x.startswith("hint:") for x in lines)
    clicks = any(x.startswith("Error:") for x in lines) and "' for help." in err
    return ours or clicks or (code == 130 and "aborted" in err)


def _whole(lib: Library) -> bool:
    """src is there, loads, and its disk holds what it held and passes its check."""
    bundle = lib.bundle("src")
    return (
        (bundle / "config.json").exists()
        and holds(disk(bundle), 0xAA, 1 << 20)
        and not problems_of_disks(bundle)
    )


def test_hostile_arguments_get_a_clear_refusal_and_leave_the_vm_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = Library(tmp_path / "library", tmp_path / "exports")
    lib.vmdesk("create", "src", "--boot", "bios", "--disk-size", "32MiB")
    fill(disk(lib.bundle("src")), 0xAA, 1 << 20)
    (tmp_path / "link").symlink_to("/etc/passwd")
    monkeypatch.setenv("VMDESK_HOME", str(lib.root))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    unexplained: list[str] = []
    tried: list[int] = []
    started = time.monotonic()

    @seed(campaign.SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(commands())
    def case(argv: list[str]) -> None:
        tried.append(1)
        argv = _resolve(argv, tmp_path)
        try:
            code, err = _run(argv, capsys)
        except Exception as exc:  # a traceback
            unexplained.append(f"{argv}: {type(exc).__name__}: {exc}")
            return
        if not _explained(code, err):
            unexplained.append(f"{argv}: exit {code}: {err.strip()[-300:]!r}")
        if code == 0 and argv[0] == "rename":  # done as asked: put it back for the next
            _run(["rename", argv[2], "src"], capsys)
        if not _whole(lib):
            damaged.append(argv)

    damaged: list[list[str]] = []
    case()
    whole = not damaged and _whole(lib)
    result = campaign.Result(test="hostile input: CLI arguments", operation="create, edit, "
                             "disk, clone, rename, snapshot, import, export", cases=len(tried),
                             failures=unexplained, lost=0 if whole else 1,
                             seconds=time.monotonic() - started)  # fmt: skip
    result.record()
    assert os.path.exists("/etc/passwd")
    assert whole, f"src lost its bundle, its data or its disk's health after {damaged[:1]}"
    assert not unexplained, "\n".join(unexplained[:20])
