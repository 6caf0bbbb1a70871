"""VM-Desk: a desktop virtual-machine manager."""

__version__ = "0.1.0"
