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

__all__ = ["pyspy_path", "ptrace_problem", "dump_stack", "PERMISSION_FIX", "looks_like_permission_error",
           "ptrace_scope", "process_state", "stopped_note"]

PERMISSION_FIX = ("py-spy needs ptrace / process_vm_readv rights (CAP_SYS_PTRACE): run as root or with "
                  "CAP_SYS_PTRACE; in Docker start the container with --cap-add SYS_PTRACE; with Yama, "
                  "sysctl kernel.yama.ptrace_scope=1 lets a launcher trace its children (0 allows attaching "
                  "to any process of the same user)")

_PERMISSION_WORDS = ("permission denied", "operation not permitted", "eperm", "ptrace_scope",
                     "cap_sys_ptrace", "failed to attach")


def looks_like_permission_error(text: str) -> bool:
    """Whether py-spy's output says it was refused access (checked after the fact)."""
    low = text.lower()
    return any(w in low for w in _PERMISSION_WORDS)


def ptrace_scope() -> int | None:
    """kernel.yama.ptrace_scope (0..3), or None where Yama is not present."""
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip())
    except (OSError, ValueError):
        return None


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
    scope = ptrace_scope() or 0
    if scope >= 3:
        return ("kernel.yama.ptrace_scope = 3 forbids ptrace entirely (until reboot); "
                "profiling other processes is impossible on this host")
    if scope == 2 and not _has_cap_sys_ptrace():
        who = "root without CAP_SYS_PTRACE" if os.geteuid() == 0 else "not root"
        return (f"kernel.yama.ptrace_scope = 2 needs CAP_SYS_PTRACE ({who}): run as root with the "
                "capability (in Docker: --cap-add SYS_PTRACE), or sysctl kernel.yama.ptrace_scope=1")
    return None   # scope 0/1 (or no Yama): a launcher may trace its own children


def _has_cap_sys_ptrace() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 19 & 1)
    except (OSError, ValueError):
        pass
    return False


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, D, T stopped, t traced, Z ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 :].split(None, 1)[0].decode()
    except (OSError, ValueError, IndexError):
        return None


def stopped_note(pid: int) -> str | None:
    """A sentence saying `pid` is stopped (state T or t), or None if it is not."""
    state = process_state(pid)
    if state not in ("T", "t"):
        return None
    why = "SIGSTOP or SIGTSTP" if state == "T" else "a tracer (debugger)"
    return f"the process is stopped (state {state}: {why}); `kill -CONT {pid}` resumes it"


def dump_stack(pid: int, timeout: float = 15.0) -> str:
    """`py-spy dump --pid PID` output, or a line saying why it could not be had.

    A stopped process (SIGSTOP) cannot be suspended again by py-spy, which then fails
    with a Rust backtrace; it is read with --nonblocking instead (it is not running, so
    the stack is consistent) and said to be stopped.  A Rust backtrace from any other
    failure is cut off: the error above it is what a user can act on.
    """
    exe = pyspy_path()
    if exe is None:
        return "(no stack: py-spy is not installed)"
    stopped = stopped_note(pid)
    cmd = [exe, "dump", "--pid", str(pid), *(["--nonblocking"] if stopped else [])]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"(no stack: py-spy dump --pid {pid} timed out after {timeout:.0f} s)"
    except OSError as e:
        return f"(no stack: cannot run py-spy: {e})"
    head = f"({stopped}; its stack, read without suspending it:)\n" if stopped else ""
    err = _without_backtrace(out.stderr or "") or _without_backtrace(out.stdout or "")
    if out.returncode != 0:
        hint = ""
        if looks_like_permission_error(err):
            hint = "\n  " + PERMISSION_FIX
        msg = f"(no stack: py-spy dump --pid {pid} failed: {err.strip()}{hint})"
        return f"({stopped})\n{msg}" if stopped else msg
    return head + _without_backtrace(out.stdout).rstrip()


def _without_backtrace(text: str) -> str:
    """py-spy's output up to its "Stack backtrace:" (py-spy's own Rust frames)."""
    return text.split("\nStack backtrace:", 1)[0].split("Stack backtrace:", 1)[0]
