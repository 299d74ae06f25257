"""The `aerosync` command: argparse front end over the coordinator and the views.

Exit status: 0 success; 1 a run failed (worker died, invariant broken) or its results
could not be saved where asked (a copy goes to the temporary directory); 2 usage error
(bad scenario, key, value, file or output path: nothing was created); 130 / 143
interrupted by Ctrl-C / SIGTERM (a run interrupted after its start still prints and
saves what it measured, marked interrupted).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aerosync.crash import CrashLog
from aerosync.errors import AeroSyncError, UsageError

__all__ = ["main"]

_REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = _REPO / "scenarios" / "default.toml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep its wording
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fmt_int(n: float) -> str:
    return f"{round(n):,}"


def _summary(res: Any) -> str:
    d = res.to_dict()
    scn, sim = d["scenario"], d["simulated_topology"]
    lines = []
    host_cpus = sorted(set(sim["host_cpu"]))
    lines.append(f"AeroSync run: {scn['name']} (workload {scn['run']['workload']})"
                 + (" -- INTERRUPTED, figures up to the interrupt" if d.get("interrupted") else ""))
    lines.append(
        f"  {sim['nr_cpus']} simulated CPUs on host CPUs {','.join(map(str, host_cpus))}; "
        f"{sim['nr_nodes']} node(s) ({sim['source']}); {scn['machine']['memory'] // 2**20} MiB simulated RAM"
    )
    kern = scn.get("kernel") or {}
    if kern:
        eff = kern.get("effective", {})
        mag = eff.get("slab_mag_size", 0)
        lines.append(
            f"  kernel profile {kern['profile']}: slab magazines {f'on ({mag})' if mag else 'off'}, "
            f"per-CPU sheaves {'on' if eff.get('slab_percpu_sheaves') else 'off'}, "
            f"PCP autotune {eff.get('pcp_autotune')}, THP {'on' if eff.get('thp') else 'off'}"
        )
    lines.append(
        f"  measured {d['measured_s']:.2f} s (warm-up {scn['run']['warmup']:.2f} s excluded), "
        f"seed {scn['run']['seed']}, workers ready in {d['ready_s']:.2f} s"
    )
    for note in d["notes"]:
        lines.append(f"  note: {note}")
    lines.append("")
    hdr = f"  {'cpu':>4} {'node':>4} {'host':>4} {'pid':>8} {'ops':>14} {'ops/s':>12} {'min/s':>12} " \
          f"{'median/s':>12} {'max/s':>12} {'ns/op':>8}"
    lines.append(hdr)
    for c in d["cpus"]:
        nsop = 1e9 / c["ops_per_s"] if c["ops_per_s"] else 0.0
        lines.append(
            f"  {c['cpu']:>4} {c['node']:>4} {c['host_cpu']:>4} {c['pid']:>8} {_fmt_int(c['ops']):>14} "
            f"{_fmt_int(c['ops_per_s']):>12} {_fmt_int(c['ops_per_s_min']):>12} "
            f"{_fmt_int(c['ops_per_s_median']):>12} {_fmt_int(c['ops_per_s_max']):>12} {nsop:>8.0f}"
        )
    lines.append(f"  {'all':>4} {'':>4} {'':>4} {'':>8} {_fmt_int(d['total_ops']):>14} {_fmt_int(d['ops_per_s']):>12}")
    lines.extend(_hotplug_lines(d))
    harness = [c["harness_ns_per_op"] for c in d["cpus"]]
    if harness:
        h = sorted(harness)[len(harness) // 2]
        lines.append(f"  harness cost (null workload loop on each CPU): {h:.1f} ns/op median")
    lat = d.get("latency", {}).get("all", {})
    if lat.get("samples"):
        lines.append(f"  op latency (sampled {lat['samples']:,} ops): p50 {lat['p50_ns'] / 1000:.2f} us, "
                     f"p99 {lat['p99_ns'] / 1000:.2f} us, p99.9 {lat['p999_ns'] / 1000:.2f} us, "
                     f"max {lat['max_ns'] / 1000:.2f} us")
    lines.append("")
    locks = [s for s in d["lock_stat"] if s["acquisitions"] or s["r_acquisitions"]]
    if locks:
        lines.append("  Top contended locks (lock_stat, per class):")
        lines.append(f"  {'class':<28} {'contentions':>12} {'con %':>7} {'wait-avg us':>12} {'wait-max us':>12} "
                     f"{'acquisitions':>13} {'acq-bounces':>12} {'hold-avg us':>12}")
        for s in locks[:5]:
            acq = s["acquisitions"] + s["r_acquisitions"]
            con = s["contentions"] + s["r_contentions"]
            wavg = (s["wait_total"] + s["r_wait_total"]) / con / 1000 if con else 0.0
            havg = s["hold_total"] / s["acquisitions"] / 1000 if s["acquisitions"] else 0.0
            lines.append(
                f"  {s['lock_class']:<28} {_fmt_int(con):>12} {100 * con / acq if acq else 0:>6.2f}% {wavg:>12.2f} "
                f"{max(s['wait_max'], s['r_wait_max']) / 1000:>12.2f} {_fmt_int(acq):>13} "
                f"{_fmt_int(s['acq_bounces']):>12} {havg:>12.3f}"
            )
        lines.append("")
    chk = d.get("mm_check") or {}
    if chk:
        live = len(chk.get("live_checks", []))
        extra = f" (+{live} live checks, all OK)" if live else ""
        if chk["ok"]:
            lines.append(f"  Invariant check after the run: OK in {chk['elapsed_s']:.3f} s{extra}")
        else:
            lines.append(f"  Invariant check after the run: {len(chk['violations'])} VIOLATIONS")
            lines.extend(f"    {v}" for v in chk["violations"][:20])
        sm = chk.get("summary") or {}
        if "reclaim_lru_folios" in sm:
            rl = sum(1 for c in chk.get("live_checks", []) if "reclaim" in c)
            lines.append(f"  Reclaim check (LRU1-4, SW1-3): {sm['reclaim_lru_folios']} folios on LRUs, "
                         f"{sm.get('reclaim_swap_slots_used', 0)} swap slots in use for "
                         f"{sm.get('reclaim_swap_references', 0)} references; {rl} live")
        lines.append("")
    crash = CrashLog.summary_lines(d.get("crash") or {})
    if crash:
        lines.extend([*crash, ""])
    if d["workload"]:
        lines.append("  Workload checks and figures:")
        for k, v in d["workload"].items():
            if k == "opt" and isinstance(v, dict):          # a reclaim run beside Belady's OPT
                from aerosync.report.opt import opt_lines

                lines.extend(opt_lines(v))
                continue
            if isinstance(v, list) and len(v) > 8:          # a series: result.json has it
                lines.append(f"    {k}: {len(v)} entries (in result.json)")
                continue
            if isinstance(v, dict) and v and all(isinstance(x, str) for x in v.values()):   # texts per key
                lines.append(f"    {k}: {', '.join(map(str, v))} (texts in result.json)")
                continue
            if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
                lines.append(f"    {k}:")
                lines.extend(f"      {sk}: " + ", ".join(f"{a} {b}" for a, b in sv.items()) for sk, sv in v.items())
                continue
            flag = ""
            if k == "lost_updates":
                flag = "  (ok)" if v == 0 else "  (LOST UPDATES: mutual exclusion or atomicity broken)"
            elif k == "corrupt":
                flag = "  (ok)" if v == 0 else "  (CORRUPT: memory handed to two owners at once)"
            elif k == "leaked_objects":
                flag = "  (ok)" if v == 0 else "  (LEAK: objects allocated and never freed)"
            elif k in ("leaked_pages", "leaked_mms"):
                flag = "  (ok)" if v == 0 else "  (LEAK: still mapped after every task exited)"
            lines.append(f"    {k} = {v}{flag}")
    return "\n".join(lines).rstrip() + "\n"


def _hotplug_lines(d: dict[str, Any]) -> list[str]:
    """What CPU hotplug did in the run (result["hotplug"], aerosync/hotplug.py)."""
    events = d.get("hotplug") or []
    if not events:
        return []
    off = ", ".join(str(c["cpu"]) for c in d["cpus"] if c["state"] == "offline") or "none"
    out = [f"  CPU hotplug ({len(events)} event{'s' if len(events) != 1 else ''}; CPUs offline at the end: {off}):"]
    for e in events:
        head = f"    {e['t']:7.2f} s  cpu{e['cpu']} {e['action']:<7} ({e['source']})"
        if "refused" in e:
            out.append(f"{head}  REFUSED: {e['refused']}")
        elif "skipped" in e:
            out.append(f"{head}  not run: {e['skipped']}")
        elif e["action"] == "offline":
            out.append(f"{head}  {e['ms']:.1f} ms (worker left {e['leave_ms']:.1f}, exited {e['exit_ms']:.1f}, "
                       f"mm teardown {e['teardown_ms']:.1f}): {e['pcp_pages']} PCP pages, {e['cpu_slabs']} cpu slabs, "
                       f"{e['cpu_partial_slabs']} partial slabs, {e['magazine_objects']} magazine objects, "
                       f"{e['sheaves']} sheaves"
                       + (f", {e['lru_batch']} LRU batch folios" if e.get("lru_batch") else "") + " given back")
        else:
            out.append(f"{head}  {e['ms']:.1f} ms to a running worker (pid {e['pid']})")
    return out


def _cmd_hotplug(args: argparse.Namespace) -> int:
    """`aerosync hotplug [--arena NAME] [cpuN offline|online]`: ask a live run's coordinator
    to take a CPU offline or bring it back (aerosync/hotplug.py); without a CPU, list
    each CPU's hotplug state."""
    from aerosync import hotplug
    from aerosync.arena import layout as L
    from aerosync.mm.cpuhp import hp_state

    if (args.cpu is None) != (args.action is None):
        raise UsageError("give both a CPU and an action (e.g. `aerosync hotplug cpu1 offline`), "
                         "or neither to list the CPUs")
    cpu = hotplug.parse_cpu(args.cpu) if args.cpu is not None else None
    arena = _attach_live(args.arena, "hotplug")
    try:
        if cpu is None:
            from aerosync.mm.reclaim.kthread import kthread_cpus

            kthreads = kthread_cpus(arena)
            for c in range(int(arena.config.get("nr_cpus", 0))):
                print(f"cpu{c}: {L.HP_NAMES[hp_state(arena, c)]}" + (" (kernel thread)" if c in kthreads else ""))
            return 0
        hotplug.request(arena, cpu, args.action)
        print(f"hotplug: cpu{cpu} is {args.action}")
    finally:
        arena.close()
    return 0


def _attach_live(name: str | None, cmd: str) -> Any:
    """Attach a live arena by name (default: the only one running; a missing one is
    ArenaNotFound, a usage error: exit 2)."""
    from aerosync.arena.segment import Arena

    return Arena.attach(name or _only_live_arena(cmd))


def _cmd_run(args: argparse.Namespace) -> int:
    from aerosync import coordinator
    from aerosync.report.rundir import check_output_file, check_runs_dir
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    overrides = list(args.set or [])
    if args.cpus is not None:
        overrides.append(f"machine.cpus={args.cpus}")
    if args.duration is not None:
        overrides.append(f"run.duration={args.duration}")
    scn = load_scenario(args.scenario, registry(), overrides)
    # Where the results go is checked now: a run must not end in a path it cannot write.
    if not args.no_save:
        check_runs_dir(Path(args.runs_dir))
    if args.output:
        check_output_file(Path(args.output))
    from aerosync.top import LiveRun, ProgressBar

    target = scn.run.ops * scn.machine.cpus if scn.run.ops and isinstance(scn.machine.cpus, int) else None
    quiet = args.json
    try:
        with ProgressBar(scn.run.duration, target, enabled=False if quiet or args.live else None) as bar, \
                LiveRun(enabled=None if args.live and not quiet else False) as live:
            res = coordinator.run(scn, on_sample=bar.on_sample, on_tick=live.on_tick if args.live else None)
    except coordinator.RunInterrupted as e:
        _report_run(e.result, args)      # what was measured, marked interrupted; main() says so and exits 128+N
        raise
    return _report_run(res, args)


def _report_run(res: Any, args: argparse.Namespace) -> int:
    """Print the run's summary (or JSON), then save it; the exit status of the run."""
    d = res.to_dict()
    # The figures first, on screen whatever happens to the files below.
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        sys.stdout.write(_summary(res))
    saved = _save_run(d, args)
    w = d["workload"]
    bad = (w.get("lost_updates", 0) or w.get("corrupt", 0) or w.get("leaked_objects", 0)
           or w.get("leaked_pages", 0) or w.get("leaked_mms", 0))
    return 1 if bad or not saved or not d.get("mm_check", {}).get("ok", True) else 0


def _save_run(d: dict[str, Any], args: argparse.Namespace) -> bool:
    """Write the run directory and --output; say where the result went, or why not and
    where it went instead.  False if something asked for could not be written."""
    from aerosync.report.rundir import save_fallback, write_run_dir

    said: list[str] = []
    failed: list[str] = []
    if not args.no_save:
        try:
            run_dir = write_run_dir(d, Path(args.runs_dir), args.scenario)
            said.append(f"run saved in {run_dir} (result.json, lock_stat.txt, plots/)")
        except (OSError, AeroSyncError) as e:
            failed.append(f"the run directory could not be written under {args.runs_dir}: {e}")
    if args.output:
        try:
            Path(args.output).write_text(json.dumps(d, indent=1) + "\n")
            said.append(f"result written to {args.output}")
        except OSError as e:
            failed.append(f"--output {args.output} could not be written: {e}")
    if failed:
        fallback = save_fallback(d)
        failed.append(f"the result is saved in {fallback} instead" if fallback else
                      "no copy could be saved anywhere: the figures printed above are all there is")
    out = sys.stderr if args.json else sys.stdout
    if said and not args.json:
        print()
    for line in said:
        print(f"  {line}" if not args.json else line, file=out)
    for line in failed:
        print(f"aerosync run: {line}", file=sys.stderr)
    return not failed


def _cmd_topology(args: argparse.Namespace) -> int:
    from aerosync.arch import topology as topo

    host = topo.read_host()
    nr = None if args.cpus in (None, "all") else int(args.cpus)
    if args.cpus not in (None, "all") and not str(args.cpus).isdigit():
        raise UsageError(f"--cpus {args.cpus!r}: allowed: 'all' or a positive integer")
    sim = topo.build_sim(args.topology, host, nr_cpus=nr if nr is not None else len(host.allowed_cpus))
    if args.json:
        print(json.dumps({"host": host.to_dict(), "simulated": sim.to_dict()}, indent=1))
    else:
        sys.stdout.write(topo.render(host, sim).rstrip() + "\n")
    return 0


def _load_result(arg: str) -> Any:
    path = Path(arg)
    if path.is_dir():
        path = path / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: cannot read a run result (a run directory or its result.json): {e}") from None


def _cmd_stat(args: argparse.Namespace) -> int:
    from aerosync import procfs

    if args.view is None or args.view in procfs.TASK_VIEWS:
        return _stat_task(args, args.view or "tasks")
    if args.view not in procfs.STAT_VIEWS:
        raise UsageError(f"stat {args.view!r}: allowed views: {', '.join(procfs.STAT_VIEWS + procfs.TASK_VIEWS)}")
    if args.pid is not None:
        raise UsageError(f"stat {args.view} --pid {args.pid}: --pid goes with {', '.join(procfs.PID_VIEWS)}")
    if args.result:
        d = _load_result(args.result)
        if args.json:
            print(json.dumps(procfs.render_saved_json(d, args.view, args.when), indent=1))
        else:
            sys.stdout.write(procfs.render_saved(d, args.view, args.when))
        return 0
    from aerosync.arena.segment import Arena

    arena = Arena.attach(args.arena or _only_live_arena())
    try:
        if args.json:
            print(json.dumps(procfs.render_json(arena, args.view), indent=1))
        else:
            sys.stdout.write(procfs.render(arena, args.view))
    finally:
        arena.close()
    return 0


def _stat_task(args: argparse.Namespace, view: str) -> int:
    """Per-task views; a pid view without --pid lists the tasks to choose from."""
    from aerosync import procfs

    pid = args.pid
    if view == "tasks" and pid is not None:
        raise UsageError(f"stat tasks --pid {pid}: --pid goes with {', '.join(procfs.PID_VIEWS)}")
    if view != "tasks" and pid is None:
        print(f"aerosync stat {view}: no --pid given; the tasks are listed (choose one with --pid N)",
              file=sys.stderr)
        view = "tasks"
    if args.result:
        out = procfs.render_saved_task(_load_result(args.result), view, pid, args.when, args.json)
    else:
        from aerosync.arena.segment import Arena

        arena = Arena.attach(args.arena or _only_live_arena())
        try:
            out = procfs.render_task(arena, view, pid, args.json)
        finally:
            arena.close()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        sys.stdout.write(out)
    return 0


def _only_live_arena(cmd: str = "stat") -> str:
    from aerosync.arch.cpu import proc_alive
    from aerosync.arena.cleanup import find_project_objects

    live = [n for n, pid in find_project_objects() if not n.startswith("sem.") and proc_alive(pid)]
    if len(live) != 1:
        raise UsageError(
            f"{cmd}: {len(live)} live arenas ({', '.join(live) or 'none'}); name one with --arena NAME"
            + (" or read a saved result with --result FILE" if cmd == "stat" else "")
        )
    return live[0]


def _cmd_cleanup(args: argparse.Namespace) -> int:
    import tempfile

    from aerosync.arena.cleanup import cleanup_stale
    from aerosync.params import TMP_PREFIX

    removed = cleanup_stale(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    tmp = tempfile.gettempdir()
    if not removed and not args.quiet:
        print(f"cleanup: nothing stale in /dev/shm or {tmp}")
    for name in removed:
        print(f"cleanup: {verb} {tmp if name.startswith(TMP_PREFIX) else '/dev/shm'}/{name}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from aerosync.bench import run_bench

    return run_bench(args.suites, as_json=args.json, repeat=args.repeat)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="aerosync", description="AeroSync: pinned processes as simulated CPUs sharing one arena")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a scenario and print a summary")
    r.add_argument("scenario", nargs="?", default=str(DEFAULT_SCENARIO), help="scenario TOML (default: %(default)s)")
    r.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a scenario key")
    r.add_argument("--cpus", help="shorthand for --set machine.cpus=...")
    r.add_argument("--duration", type=float, help="shorthand for --set run.duration=...")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.add_argument("--output", "-o", help="also write the JSON result to this file")
    r.add_argument("--runs-dir", default=os.environ.get("AEROSYNC_RUNS_DIR", "runs"),
                   help="where run directories go (default: $AEROSYNC_RUNS_DIR or ./runs)")
    r.add_argument("--no-save", action="store_true", help="do not write a run directory")
    r.add_argument("--live", action="store_true", help="show the live top view while the run goes")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser("topology", help="show the host and the simulated machine")
    t.add_argument("--topology", default="host", help="host, fake:N or a topology TOML file")
    t.add_argument("--cpus", help="number of simulated CPUs (default: all allowed)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_cmd_topology)

    from aerosync.procfs import STAT_VIEWS

    s = sub.add_parser("stat", help="kernel-format views of a live arena or a saved result")
    s.add_argument("view", nargs="?", help=f"the view, one of: {', '.join(STAT_VIEWS)}; per task: tasks "
                                           "(the default), maps, smaps, smaps_rollup, status, numa_maps (with --pid)")
    s.add_argument("--pid", type=int, help="the task for maps, smaps, smaps_rollup, status, numa_maps")
    s.add_argument("--arena", help="name of a live arena (default: the only one running)")
    s.add_argument("--result", help="a run directory or result.json of a finished run")
    s.add_argument("--when", choices=("before", "after"), default="after",
                   help="with --result: the view as it was before or after the run")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_stat)

    b = sub.add_parser("bench", help="measure the figures the issues ask for")
    b.add_argument("suites", nargs="*", help="suites to run (default: all)")
    b.add_argument("--json", action="store_true")
    b.add_argument("--repeat", type=int, default=5, help="repetitions per figure; the median is reported")
    b.set_defaults(func=_cmd_bench)

    from aerosync.doctor import add_doctor_parser
    from aerosync.profile import add_profile_parser
    from aerosync.report.compare import add_compare_parser
    from aerosync.report.sweep import add_sweep_parser
    from aerosync.top import add_top_parser

    add_profile_parser(sub)
    add_sweep_parser(sub)
    add_compare_parser(sub)
    add_top_parser(sub)
    add_doctor_parser(sub)

    h = sub.add_parser("hotplug", help="take a CPU of a live run offline or bring it back")
    h.add_argument("cpu", nargs="?", help="the simulated CPU: cpuN or N (omit to list every CPU's state)")
    h.add_argument("action", nargs="?", choices=("offline", "online"), help="offline or online")
    h.add_argument("--arena", help="name of a live arena (default: the only one running)")
    h.set_defaults(func=_cmd_hotplug)

    c = sub.add_parser("cleanup", help="remove segments and semaphores whose owner is gone")
    c.add_argument("--dry-run", action="store_true", help="list, do not remove")
    c.add_argument("--quiet", action="store_true", help="print only what was removed")
    c.set_defaults(func=_cmd_cleanup)
    return p


def _on_sigterm(signum: int, frame: object) -> None:
    from aerosync.errors import Terminated

    raise Terminated()


def _interrupted(cmd: str, e: KeyboardInterrupt) -> int:
    """Exit 128 + signal after removing whatever this process created and still names."""
    from aerosync.arena.cleanup import remove_own

    signum = getattr(e, "signum", 2)
    left = remove_own()
    extra = f" ({len(left)} leftover shared-memory object(s) removed)" if left else ""
    print(f"aerosync {cmd}: interrupted (signal {signum}); workers stopped and the arena removed{extra}",
          file=sys.stderr)
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM as an exception, like Ctrl-C, for every command: whatever made an arena
    # (a run, a bench phase outside coordinator.run) removes it in its `finally`.
    import threading

    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        return _interrupted(args.cmd, e)
    except AeroSyncError as e:
        from aerosync.errors import interrupt_behind

        intr = interrupt_behind(e)
        if intr is not None:         # a clean-up step failed after the interrupt: still an interrupt
            return _interrupted(args.cmd, intr)
        print(f"aerosync {args.cmd}: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
