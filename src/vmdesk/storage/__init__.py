"""Disk images: create, inspect, grow, convert, clone and snapshot them (via qemu-img)."""
