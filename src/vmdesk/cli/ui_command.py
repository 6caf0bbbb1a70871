"""`vmdesk ui`: the web UI on this machine, behind a per-launch token."""

from __future__ import annotations

import click
from rich.markup import escape

from vmdesk.cli.output import console


@click.command()
@click.option("--port", default=8765, show_default=True, help="TCP port; 0 picks a free one.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; just print the URL.")
@click.option(
    "--listen",
    metavar="ADDR",
    help="Serve on ADDR instead of 127.0.0.1 (other machines can then reach it; the token "
    "is still required).",
)
def ui(port: int, no_browser: bool, listen: str | None) -> None:
    """Serve the web UI and its API on 127.0.0.1 and open it in a browser."""
    import threading
    import webbrowser

    from vmdesk.web import security, server

    token = security.new_token()
    sock = server.bind(listen or server.LOOPBACK, port)
    link = server.url(sock, token)
    console.print(f"VM-Desk web UI: [bold]{escape(link)}[/]")
    console.print("  the link carries this session's secret token: do not share it")
    if listen:
        console.print(
            f"  [yellow]listening on {escape(listen)}[/]: reachable from other machines, over "
            "plain HTTP (the token crosses the network unencrypted: trusted networks only)"
        )
    console.print("  Ctrl-C stops the server (running VMs keep running)")
    if not no_browser:
        threading.Timer(0.5, webbrowser.open, args=(link,)).start()
    served = server.server(sock, token, listen=listen)
    server.settle_heap()
    served.run(sockets=[sock])
