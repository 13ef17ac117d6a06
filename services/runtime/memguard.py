"""Host-memory admission control shared by every service (``objvid.runtime.memguard``).

A service holds one :class:`HostMemoryGuard`. Before a request allocates something large (decoded images,
a parsed object file, a scene on a CPU device), it reserves its estimate::

    with guard.reserve(nbytes, "images[3]"):
        decode(...)

The reservation is admitted when ``resident + reserved + nbytes <= budget``, where ``resident`` is the
process's resident set size now (``/proc/self/statm``: includes memory the allocator keeps for reuse, so
the check errs on the safe side), ``reserved`` the estimates of requests still running. Otherwise it
raises :class:`HostMemoryExceeded` (gRPC RESOURCE_EXHAUSTED) before anything is allocated, with a one-line
message naming the request part, the bytes needed and the flag.

The budget: an explicit byte count, or ``0`` = automatic: 80 % of the memory the process may use (the
cgroup v2/v1 limit when there is one, else the machine's ``MemTotal``). ``None`` disables the guard.
Device memory has its own budget in each service (the cache store's ``--memory-budget``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from objvid.runtime.errors import ResourceExhausted

log = logging.getLogger("objvid.runtime.memguard")

#: Share of the usable memory an automatic budget takes.
AUTO_FRACTION = 0.8
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class HostMemoryExceeded(ResourceExhausted):
    """A request would take the process over its host-memory budget (gRPC RESOURCE_EXHAUSTED)."""


def resident_bytes() -> int:
    """Resident set size of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def usable_memory_bytes() -> int:
    """Memory this process may use: the cgroup limit when set, else MemTotal (0 when unknown)."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):
            return int(text)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def parse_bytes(text: str | int, name: str) -> int:
    """``"4G"``, ``"512M"``, ``"1024"`` (bytes; K/M/G/T are powers of 1024) -> int. ValueError names ``name``."""
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip().upper().removesuffix("B").removesuffix("I")
        mult = 1
        if s and s[-1] in "KMGT":
            mult = 1024 ** ("KMGT".index(s[-1]) + 1)
            s = s[:-1]
        try:
            value = int(float(s) * mult)
        except ValueError:
            raise ValueError(
                f"{name}: expected a byte count like 4G, 512M or 1048576, got {text!r}"
            ) from None
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, got {text!r}")
    return value


def parse_budget(text: str | int | None, name: str) -> int | None:
    """A ``--host-memory-budget`` value: ``auto`` -> 0 (automatic), ``off`` -> None, else bytes (> 0)."""
    if text is None or str(text).strip().lower() in ("off", "none"):
        return None
    if str(text).strip().lower() == "auto":
        return 0
    value = parse_bytes(text, name)
    if value == 0:
        raise ValueError(f"{name}: must be > 0 bytes, auto or off, got {text!r}")
    return value


class HostMemoryGuard:
    """Admission control against a host-memory budget (see module docstring).

    budget_bytes: the budget; 0 = automatic (80 % of the usable memory); None = no guard (every
    reservation admitted, still counted). flag: the option named in refusals. rss: the resident-size
    probe (tests pass their own to make the process's size deterministic).
    """

    def __init__(
        self, budget_bytes: int | None = 0, *, flag: str = "--host-memory-budget", rss=resident_bytes
    ):
        if budget_bytes == 0:
            budget_bytes = int(usable_memory_bytes() * AUTO_FRACTION) or None
        self.budget = budget_bytes
        self.flag = flag
        self._rss = rss
        self._lock = threading.Lock()
        self.reserved = 0
        self.refusals = 0

    def check(self, nbytes: int, what: str) -> None:
        """Raise HostMemoryExceeded if ``nbytes`` more would not fit now (reserves nothing)."""
        with self._lock:
            self._admit(int(nbytes), what)

    def _admit(self, nbytes: int, what: str) -> None:
        if self.budget is None:
            return
        if nbytes > self.budget:
            self.refusals += 1
            raise HostMemoryExceeded(
                f"{what}: needs about {nbytes} bytes of host memory, more than the whole budget of "
                f"{self.budget} bytes ({self.flag})"
            )
        resident = self._rss()
        if resident + self.reserved + nbytes > self.budget:
            self.refusals += 1
            raise HostMemoryExceeded(
                f"{what}: needs about {nbytes} bytes of host memory; the process holds {resident} and "
                f"{self.reserved} are reserved by requests in flight, of a budget of {self.budget} bytes "
                f"({self.flag}); retry later or send less"
            )

    @contextmanager
    def reserve(self, nbytes: int, what: str) -> Iterator[None]:
        """Admit ``nbytes`` (or raise HostMemoryExceeded) and hold the reservation for the block."""
        nbytes = max(0, int(nbytes))
        with self._lock:
            self._admit(nbytes, what)
            self.reserved += nbytes
        try:
            yield
        finally:
            with self._lock:
                self.reserved -= nbytes
