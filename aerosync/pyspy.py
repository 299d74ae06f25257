"""py-spy as a tool: find it, check that it may attach, dump a process's Python stack.

py-spy reads another process's memory with process_vm_readv/ptrace; containers often
forbid that (Yama ptrace_scope, a missing CAP_SYS_PTRACE).  Every failure here comes
back as text that says which permission is missing and how to grant it, never as an
exception, because a lockup report or a profile must not be lost to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["pyspy_path", "ptrace_problem", "dump_stack"]


def pyspy_path() -> str | None:
    """py-spy beside this interpreter (the project's venv) first, then on PATH."""
    cand = Path(sys.executable).parent / "py-spy"
    if cand.exists():
        return str(cand)
    return shutil.which("py-spy")


def ptrace_problem() -> str | None:
    """None if py-spy should be able to attach to our children, else the reason and fix."""
    if pyspy_path() is None:
        return "py-spy is not installed: pip install py-spy (it is in the project's [profile] extra)"
    try:
        scope = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip())
    except (OSError, ValueError):
        scope = 0
    root = os.geteuid() == 0
    if scope >= 3:
        return ("kernel.yama.ptrace_scope = 3 forbids ptrace entirely (until reboot); "
                "profiling other processes is impossible on this host")
    if scope == 2 and not root:
        return ("kernel.yama.ptrace_scope = 2 needs CAP_SYS_PTRACE: run as root, or "
                "sysctl kernel.yama.ptrace_scope=1 (in Docker: --cap-add SYS_PTRACE)")
    if not _has_cap_sys_ptrace() and scope == 1 and not root:
        return None   # scope 1 allows descendants: launch the run under py-spy
    return None


def _has_cap_sys_ptrace() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 19 & 1)
    except (OSError, ValueError):
        pass
    return False


def dump_stack(pid: int, timeout: float = 15.0) -> str:
    """`py-spy dump --pid PID` output, or a line saying why it could not be had."""
    exe = pyspy_path()
    if exe is None:
        return "(no stack: py-spy is not installed)"
    try:
        out = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired:
        return f"(no stack: py-spy dump --pid {pid} timed out after {timeout:.0f} s)"
    except OSError as e:
        return f"(no stack: cannot run py-spy: {e})"
    if out.returncode != 0:
        err = (out.stderr or out.stdout).strip()
        hint = ""
        if "Permission" in err or "EPERM" in err or "Operation not permitted" in err:
            hint = ("\n  py-spy needs ptrace rights: run as root or with CAP_SYS_PTRACE "
                    "(docker run --cap-add SYS_PTRACE), or set kernel.yama.ptrace_scope=0/1")
        return f"(no stack: py-spy dump --pid {pid} failed: {err}{hint})"
    return out.stdout.rstrip()
