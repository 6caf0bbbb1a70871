"""Tap devices on a Linux bridge, created with our own CAP_NET_ADMIN.

Standard library only: the supervisor opens taps while it replays a cached launch, before
the config model is imported (see vmdesk.supervisor.launch_plan).
"""

from __future__ import annotations

import fcntl
import os
import socket

# <linux/if_tun.h>, <linux/sockios.h>, <net/if.h>
_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI, _IFF_VNET_HDR, _IFF_UP = 0x0002, 0x1000, 0x4000, 0x0001
_SIOCBRADDIF, _SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x89A2, 0x8913, 0x8914


def open_tap(bridge: str) -> int:
    """A new tap device (named vmdeskN by the kernel), up and on ``bridge``; returns its fd.
    Not persistent: closing the last fd removes the device."""
    import struct

    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        request = struct.pack("16sH22x", b"vmdesk%d", _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR)
        name = fcntl.ioctl(fd, _TUNSETIFF, request)[:16].rstrip(b"\0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
            index = socket.if_nametoindex(name.decode())
            fcntl.ioctl(ctl, _SIOCBRADDIF, struct.pack("16si20x", bridge.encode(), index))
            got = fcntl.ioctl(ctl, _SIOCGIFFLAGS, struct.pack("16sH22x", name, 0))
            flags = struct.unpack("16sH22x", got)[1]
            fcntl.ioctl(ctl, _SIOCSIFFLAGS, struct.pack("16sH22x", name, flags | _IFF_UP))
    except BaseException:
        os.close(fd)
        raise
    return fd
