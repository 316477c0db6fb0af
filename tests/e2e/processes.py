"""What the end-to-end tests ask of the process table (Linux /proc)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, however deep: the local servers run in sessions of their own."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            match = re.search(r"^PPid:\s+(\d+)$", status.read_text(), re.M)
        except OSError:
            continue  # the process ended while we looked: it is no one's child any more
        if match:
            parents[int(status.parent.name)] = int(match.group(1))
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has exited: it counts as gone)."""
    running = set()
    for pid in pids:
        try:
            state = re.search(r"^State:\s+(\S)", Path(f"/proc/{pid}/status").read_text(), re.M)
        except OSError:
            continue
        if state and state.group(1) != "Z":
            running.add(pid)
    return running


def listening_address(port: int) -> str:
    """The address a TCP socket listens on at ``port``: ``0.0.0.0`` or ``::`` for every interface."""
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                # the kernel prints each 32-bit word of the address in host (little-endian) order
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
                return str(ipaddress.ip_address(raw))
    raise AssertionError(f"nothing listens on port {port}")
