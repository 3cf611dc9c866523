"""Readings from /proc: a process's CPU time and memory, and where the machine's CPU went.

On a 2-core machine pgbench, PostgreSQL and the proxy compete for the same cores, and anything
else running on the machine competes with all three. `CpuAccount` splits the CPU time spent
during one run between the client (pgbench), the server (the postmaster and its backends), the
proxy, and everything else ("other"), so a run disturbed by foreign load can be recognised.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


class ProcError(RuntimeError):
    """A /proc file lacked what was asked of it."""


def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses; the fields start after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, all its threads included."""
    fields = _stat_fields(pid)
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def status_kib(pid: int, name: str) -> int:
    """A kB-valued line of /proc/<pid>/status, such as VmRSS or VmHWM."""
    return kib_field(f"/proc/{pid}/status", name)


def kib_field(path: str, name: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise ProcError(f"{name} not found in {path}")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS so the next reading is this run's peak (Linux 4.0+)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (steal included: it was taken from us)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _tree_cpu(root: int) -> tuple[float, dict[int, float]]:
    """The root's own CPU plus that of its reaped children, and each live child's CPU."""
    fields = _stat_fields(root)
    own = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS  # utime, stime, cutime, cstime
    children: dict[int, float] = {}
    for task in Path(f"/proc/{root}/task").iterdir():
        try:
            pids = (Path(task) / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                child = _stat_fields(int(pid))
            except (OSError, ValueError):
                continue  # exited meanwhile; its time is in the root's cutime now
            children[int(pid)] = (int(child[11]) + int(child[12])) / CLOCK_TICKS
    return own, children


@dataclass
class CpuAccount:
    """CPU seconds spent during one run, by whom. Construct with start(), then stop()."""

    proxy_pid: int | None
    server_pid: int
    wall_s: float = 0.0
    proxy_user_s: float = 0.0
    proxy_sys_s: float = 0.0
    client_s: float = 0.0
    server_s: float = 0.0
    other_s: float = 0.0
    _begin: float = field(default=0.0, init=False, repr=False)
    _busy: float = field(default=0.0, init=False, repr=False)
    _client: float = field(default=0.0, init=False, repr=False)
    _server_own: float = field(default=0.0, init=False, repr=False)
    _server_children: dict[int, float] = field(default_factory=dict, init=False, repr=False)
    _proxy: tuple[float, float] = field(default=(0.0, 0.0), init=False, repr=False)

    @classmethod
    def start(cls, proxy_pid: int | None, server_pid: int) -> CpuAccount:
        account = cls(proxy_pid, server_pid)
        account._begin = time.perf_counter()
        account._busy = _machine_busy()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        account._client = children.ru_utime + children.ru_stime
        account._server_own, account._server_children = _tree_cpu(server_pid)
        account._proxy = cpu_times(proxy_pid) if proxy_pid else (0.0, 0.0)
        return account

    def stop(self) -> CpuAccount:
        """Call after the client has exited and been waited for."""
        self.wall_s = time.perf_counter() - self._begin
        busy = _machine_busy() - self._busy
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.client_s = children.ru_utime + children.ru_stime - self._client
        own, live = _tree_cpu(self.server_pid)
        self.server_s = own - self._server_own
        self.server_s += sum(cpu - self._server_children.get(pid, 0.0) for pid, cpu in live.items())
        if self.proxy_pid:
            user, system = cpu_times(self.proxy_pid)
            self.proxy_user_s = user - self._proxy[0]
            self.proxy_sys_s = system - self._proxy[1]
        ours = self.client_s + self.server_s + self.proxy_user_s + self.proxy_sys_s
        self.other_s = max(0.0, busy - ours)
        return self

    @property
    def proxy_s(self) -> float:
        return self.proxy_user_s + self.proxy_sys_s

    @property
    def other_share(self) -> float:
        """Foreign CPU as a share of the machine's capacity during the run (0..1)."""
        return self.other_s / (self.wall_s * CORES) if self.wall_s else 0.0
