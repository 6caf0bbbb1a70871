"""Tests against a real libvirtd: domain XML it defines, and VMs on libvirt hosts."""
