"""Results on disk: run directories, the result schema, plots, sweeps and comparisons.

This package sits at the top of the layers (with the coordinator and the CLI): it turns
a run's result dict into evidence people keep and compare.

* `samples` — the per-interval rates every report shares (imports nothing above it);
* `rundir.write_run_dir` — ``runs/<time>-<scenario>/`` with result.json, CSV, views, plots;
* `schema.validate_result` — the versioned JSON Schema of result.json;
* `plots` — matplotlib (Agg) figures of a run and of a CPU sweep;
* `sweep` — ``aerosync sweep`` (grid of runs, will-it-scale CSV, scaling plot);
* `compare` — ``aerosync compare`` (mean/sd/cv/%diff, Welch's t-test).

Submodules are imported lazily so ``import aerosync.report`` stays cheap (matplotlib,
scipy and jsonschema load only when a plot, a test or a validation needs them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["validate_result", "write_run_dir"]


def write_run_dir(*args: Any, **kwargs: Any) -> Any:
    """See aerosync.report.rundir.write_run_dir."""
    from aerosync.report.rundir import write_run_dir as impl

    return impl(*args, **kwargs)


def validate_result(*args: Any, **kwargs: Any) -> Any:
    """See aerosync.report.schema.validate_result."""
    from aerosync.report.schema import validate_result as impl

    return impl(*args, **kwargs)
