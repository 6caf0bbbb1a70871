"""Screens: where a VM's screen is shown (VNC, a native window), and what to say about it."""
