"""PSS and RSS of a process tree or of a whole Ray session, per process and in total.

RSS counts every shared page (libraries, Ray's shared memory) once per process, so summing it over Ray's dozen
processes overstates what the machine spends; PSS divides each shared page among the processes mapping it, so
the PSS of all processes adds up to the memory really used. USS (private pages only) is what killing one
process would give back. Everything comes from ``/proc/<pid>/smaps_rollup`` (Linux ≥ 4.14); a process that
cannot be read (gone, or another user's) falls back to ``VmRSS`` from ``/proc/<pid>/status`` with PSS unknown.

Usage::

    from benchmarks.memory import measure
    report = measure(root_pid=os.getpid(), session_dir=ray._private.worker._global_node.get_session_dir_path())
    print(report.table())

or ``python -m benchmarks.memory --pid PID [--session-dir DIR] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

_PROC = Path("/proc")
# an actor's title gains ".method()" while it runs one (ray::ServeController.listen_for_change)
_METHOD_SUFFIX = re.compile(r"\.[A-Za-z_]\w*(\(\))?$")


@dataclass(frozen=True)
class ProcessMemory:
    """One process: its role (what Ray calls it, or its command), and its memory in MB (NaN when unreadable)."""

    pid: int
    ppid: int
    role: str
    pss_mb: float
    rss_mb: float
    uss_mb: float
    pss_anon_mb: float
    pss_file_mb: float
    pss_shmem_mb: float


@dataclass
class MemoryReport:
    """Per-process rows and their totals (PSS and USS sum meaningfully; the RSS total overcounts sharing)."""

    rows: list[ProcessMemory] = field(default_factory=list)

    @property
    def pss_mb(self) -> float:
        """Total PSS: the memory this set of processes really uses."""
        return sum(r.pss_mb for r in self.rows if not math.isnan(r.pss_mb))

    @property
    def rss_mb(self) -> float:
        """Total RSS (shared pages counted once per process)."""
        return sum(r.rss_mb for r in self.rows if not math.isnan(r.rss_mb))

    @property
    def uss_mb(self) -> float:
        """Total USS: pages private to one process each."""
        return sum(r.uss_mb for r in self.rows if not math.isnan(r.uss_mb))

    def by_role(self) -> dict[str, tuple[int, float, float]]:
        """Role → (process count, PSS MB, RSS MB), summed over the processes with that role."""
        out: dict[str, tuple[int, float, float]] = {}
        for r in self.rows:
            n, pss, rss = out.get(r.role, (0, 0.0, 0.0))
            out[r.role] = (n + 1, pss + _zero_nan(r.pss_mb), rss + _zero_nan(r.rss_mb))
        return out

    def table(self) -> str:
        """A plain-text table, largest PSS first, with a totals line."""
        lines = [f"{'pid':>8} {'PSS MB':>8} {'USS MB':>8} {'RSS MB':>8}  role"]
        for r in sorted(self.rows, key=lambda r: -_zero_nan(r.pss_mb)):
            lines.append(f"{r.pid:>8} {r.pss_mb:>8.1f} {r.uss_mb:>8.1f} {r.rss_mb:>8.1f}  {r.role}")
        total = f"{'total':>8} {self.pss_mb:>8.1f} {self.uss_mb:>8.1f} {self.rss_mb:>8.1f}"
        lines.append(f"{total}  ({len(self.rows)} processes)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: rows plus totals."""
        return {
            "rows": [asdict(r) for r in self.rows],
            "total_pss_mb": self.pss_mb,
            "total_uss_mb": self.uss_mb,
            "total_rss_mb": self.rss_mb,
        }


def _zero_nan(x: float) -> float:
    """NaN → 0 for sums."""
    return 0.0 if math.isnan(x) else x


def _read(path: Path) -> str | None:
    """A /proc file's text, or None when the process is gone or not readable."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def parent_map() -> dict[int, int]:
    """pid → ppid for every process currently visible in /proc."""
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read(entry / "stat")
        if stat is None:
            continue
        # the command name (field 2) may contain spaces and parentheses: parse after its last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root_pid: int, parents: dict[int, int] | None = None) -> list[int]:
    """``root_pid`` (if alive) and every process below it, breadth-first."""
    parents = parent_map() if parents is None else parents
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out = [root_pid] if root_pid in parents else []
    i = 0
    while i < len(out):
        out.extend(sorted(children.get(out[i], [])))
        i += 1
    return out


def cmdline(pid: int) -> str:
    """The process's command line, NUL-separated arguments joined by spaces ('' when unreadable)."""
    raw = _read(_PROC / str(pid) / "cmdline")
    return " ".join(a for a in (raw or "").split("\0") if a).strip()


def role(pid: int) -> str:
    """A short name for what the process is in a Ray session, else its command (truncated).

    Ray workers rename themselves (``ray::IDLE``, ``ray::ServeReplica:app:deployment``, ``ray::ProxyActor``)
    and append the method they are running, which is dropped here; Ray's daemons are recognised by their
    executable or script.
    """
    cmd = cmdline(pid)
    if not cmd:
        comm = _read(_PROC / str(pid) / "comm")
        return (comm or "?").strip()
    first = cmd.split()[0]
    if first.startswith("ray::"):
        name = _METHOD_SUFFIX.sub("", first[len("ray::") :])
        return "worker idle" if name == "IDLE" else name
    known = (
        ("gcs_server", "gcs_server"),
        ("raylet", "raylet"),
        ("dashboard/agent.py", "dashboard agent"),
        ("runtime_env/agent/main.py", "runtime env agent"),
        ("dashboard/dashboard.py", "dashboard head"),
        ("log_monitor.py", "log monitor"),
        ("autoscaler/_private/monitor.py", "autoscaler monitor"),
        ("default_worker.py", "worker starting"),
    )
    for needle, name in known:
        if needle in cmd:
            return name
    return cmd[:100]


def _fd_targets(pid: int, fds: Iterable[int] = (1, 2)) -> list[str]:
    """Where the process's stdout/stderr point (Ray workers log to files in their session dir)."""
    out = []
    for fd in fds:
        try:
            out.append(os.readlink(_PROC / str(pid) / "fd" / str(fd)))
        except OSError:
            pass
    return out


def session_pids(session_dir: str, parents: dict[int, int] | None = None) -> list[int]:
    """Every process of the Ray session whose directory is ``session_dir``, and their descendants.

    Ray's daemons name the session directory on their command line; workers (renamed by setproctitle) send
    stdout/stderr to ``<session_dir>/logs``. Matching either finds a session among several on one machine.
    """
    parents = parent_map() if parents is None else parents
    session_dir = os.path.realpath(session_dir)
    session_name = os.path.basename(session_dir)
    found: set[int] = set()
    for pid in parents:
        cmd = cmdline(pid)
        if session_dir in cmd or (session_name and session_name in cmd):
            found.add(pid)
        elif any(os.path.realpath(t).startswith(session_dir + "/") for t in _fd_targets(pid) if t.startswith("/")):
            found.add(pid)
    out: list[int] = []
    for pid in sorted(found):
        for p in descendants(pid, parents):
            if p not in out:
                out.append(p)
    return out


def process_memory(pid: int, ppid: int = 0) -> ProcessMemory:
    """PSS/RSS/USS of one process in MB from smaps_rollup (RSS from status and NaN for the rest if unreadable)."""
    nan = float("nan")
    values: dict[str, float] = {}
    text = _read(_PROC / str(pid) / "smaps_rollup")
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            values[parts[0].rstrip(":")] = int(parts[-2]) / 1024
    if "Pss" not in values:
        status = _read(_PROC / str(pid) / "status") or ""
        rss = next((int(ln.split()[1]) / 1024 for ln in status.splitlines() if ln.startswith("VmRSS:")), nan)
        return ProcessMemory(pid, ppid, role(pid), nan, rss, nan, nan, nan, nan)
    uss = values.get("Private_Clean", 0.0) + values.get("Private_Dirty", 0.0)
    return ProcessMemory(
        pid=pid,
        ppid=ppid,
        role=role(pid),
        pss_mb=values["Pss"],
        rss_mb=values.get("Rss", nan),
        uss_mb=uss,
        pss_anon_mb=values.get("Pss_Anon", nan),
        pss_file_mb=values.get("Pss_File", nan),
        pss_shmem_mb=values.get("Pss_Shmem", nan),
    )


def measure(
    root_pid: int | None = None,
    session_dir: str | None = None,
    extra_pids: Iterable[int] = (),
    exclude_pids: Iterable[int] = (),
) -> MemoryReport:
    """Memory of ``root_pid`` and its descendants, plus every process of the Ray session at ``session_dir``.

    ``exclude_pids`` (e.g. a measuring script's own pid) are left out, as are kernel threads (no memory map).
    """
    parents = parent_map()
    pids: list[int] = []
    if root_pid is not None:
        pids.extend(descendants(root_pid, parents))
    if session_dir is not None:
        pids.extend(p for p in session_pids(session_dir, parents) if p not in pids)
    pids.extend(p for p in extra_pids if p not in pids and p in parents)
    skip = set(exclude_pids)
    rows = [process_memory(p, parents.get(p, 0)) for p in pids if p not in skip]
    return MemoryReport([r for r in rows if not (math.isnan(r.rss_mb) or r.rss_mb == 0.0)])


def mapped_files(pid: int, contains: str = "") -> list[str]:
    """Distinct files mapped into the process (from /proc/<pid>/maps), optionally only names containing a string.

    Tells which shared libraries an import really loaded (e.g. ``libtensorflow``, ``libtorch``).
    """
    text = _read(_PROC / str(pid) / "maps") or ""
    seen: list[str] = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/") and contains in parts[5] and parts[5] not in seen:
            seen.append(parts[5])
    return seen


def main(argv: list[str] | None = None) -> None:
    """CLI: print the table (or JSON) for a pid's tree and/or a Ray session directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, help="root process; it and all its descendants are measured")
    parser.add_argument("--session-dir", help="a Ray session directory (e.g. /tmp/ray/session_latest)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.pid is None and args.session_dir is None:
        parser.error("give --pid and/or --session-dir")
    report = measure(root_pid=args.pid, session_dir=args.session_dir, exclude_pids=[os.getpid()])
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())


if __name__ == "__main__":
    main()
