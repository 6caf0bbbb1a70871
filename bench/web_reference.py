"""P8's reference server: bare uvicorn (the same HTTP parser and event loop as `vmdesk ui`)
answering every request at once with a fixed body. It shows the floor this machine sets
for 50 concurrent clients, next to what VM-Desk adds.

    .venv/bin/python -m bench.web_reference BODY_BYTES   # prints http://127.0.0.1:PORT/
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn


def app_for(body: bytes) -> Any:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main(size: int) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    config = uvicorn.Config(
        app_for(b"x" * size),
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(int(sys.argv[1]))
