"""`vmdesk ip`, `vmdesk exec` and `vmdesk clipboard`: inside a running guest, through its
agents (qemu-ga and spice-vdagent)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console, err_console

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vmdesk.core.library import Library

IMAGE_TYPES = {".png": "image/png", ".bmp": "image/bmp", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg", ".tif": "image/tiff", ".tiff": "image/tiff"}  # fmt: skip
TEXT = "text/plain;charset=utf-8"


def _library() -> Library:
    from vmdesk.service import library

    return library.open()


@click.command()
@click.argument("vm")
@click.option("--all", "every", is_flag=True, help="Every address of every interface.")
@click.option("--wait", default=2.0, show_default=True, help="Seconds to wait for the agent.")
@JSON_OUTPUT
def ip(vm: str, every: bool, wait: float, as_json: bool) -> None:
    """Print a running VM's IP address, as its guest agent reports it."""
    from vmdesk.core.errors import GuestTimeout
    from vmdesk.service import guest

    found = guest.info(_library(), vm, wait)
    if as_json:
        print_json(found)
        return
    if found["agent"] != "connected":
        raise GuestTimeout(
            f"the guest agent of {vm!r} did not answer within {wait:g} s",
            hint="is qemu-guest-agent running in the guest? (`systemctl status "
            "qemu-guest-agent`; Debian/Ubuntu: `apt install qemu-guest-agent`)",
        )
    if every:
        for a in found["addresses"]:
            click.echo(f"{a['interface']}\t{a['family']}\t{a['address']}/{a['prefix']}")
        return
    primary = found["ipv4"] or found["ipv6"]
    if primary is None:
        raise click.ClickException(f"{vm} has no address yet (its network may still be coming up)")
    click.echo(primary)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("vm")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for it.")
@click.option("--stdin", "use_stdin", is_flag=True, help="Pass this command's stdin to it.")
def exec_command(vm: str, command: tuple[str, ...], timeout: float, use_stdin: bool) -> None:
    """Run a command in a running guest through its agent (vmdesk exec NAME -- CMD).

    Its output and exit code are this command's."""
    from vmdesk.service import guest

    stdin = sys.stdin.buffer.read() if use_stdin else None
    done = guest.run(_library(), vm, list(command), stdin=stdin, timeout=timeout)
    sys.stdout.buffer.write(done["stdout"])
    sys.stdout.flush()
    sys.stderr.buffer.write(done["stderr"])
    if done["truncated"]:
        err_console.print("[yellow]![/] the guest agent cut the output short")
    sys.stderr.flush()
    code = done["exit_code"]
    raise SystemExit(128 + int(done["signal"] or 0) if code is None else int(code))


@click.command()
@click.argument("vm")
@click.option("--set", "text", help="Offer TEXT to the guest as its clipboard.")
@click.option("--file", "file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Offer a file (an image by its suffix: .png, .bmp, .jpg).")  # fmt: skip
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the guest's clipboard to a file (for an image).")  # fmt: skip
@click.option("--type", "kind", default="", help="The MIME type to ask for or offer.")
@click.option("--primary", is_flag=True, help="X11's PRIMARY selection (the mouse's).")
@click.option("--sync", is_flag=True, help="Bridge this desktop's clipboard both ways.")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for the agent.")
def clipboard(
    vm: str,
    text: str | None,
    file: Path | None,
    output: Path | None,
    kind: str,
    primary: bool,
    sync: bool,
    wait: float,
) -> None:
    """Print a running guest's clipboard, offer it one, or keep it in step with yours.

    --set TEXT or --file F offers one; --sync bridges this desktop's clipboard both ways."""
    from vmdesk.service import guest

    selection = "primary" if primary else "clipboard"
    library = _library()
    if sync:
        from vmdesk.cli.clipboard_sync import run

        run(library, vm, selection)
        return
    if text is not None or file is not None:
        if text is not None and file is not None:
            raise click.UsageError("give --set TEXT or --file FILE, not both")
        data = text.encode() if text is not None else file.read_bytes()  # type: ignore[union-attr]
        offered = kind or (IMAGE_TYPES.get(file.suffix.lower(), TEXT) if file else TEXT)
        heard = guest.set_clipboard(library, vm, data, kind=offered, selection=selection)
        where = "the guest has it" if heard else "the guest gets it once its agent starts"
        console.print(f"[green]✓[/] offered {len(data)} bytes ({offered}): {where}")
        return
    got, data, _owner = guest.clipboard(library, vm, kind=kind, selection=selection, wait=wait)
    if data is None:
        err_console.print(f"{vm}'s clipboard is empty")
        raise SystemExit(1)
    if output is not None:
        output.write_bytes(data)
        console.print(f"[green]✓[/] wrote {len(data)} bytes ({got}) to {output}")
    elif got == TEXT:
        sys.stdout.write(data.decode("utf-8", errors="replace"))
        sys.stdout.flush()
    else:
        raise click.UsageError(f"the clipboard holds {got}: write it to a file with --output")


def register(group: click.Group) -> None:
    group.add_command(ip)
    group.add_command(exec_command, "exec")
    group.add_command(clipboard)
