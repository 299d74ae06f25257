"""`SkipFigure`: what a benchmark raises when this host cannot measure its figure.

Its own module, below the suites and the runner (aerosync/bench/__init__.py), so a
suite can raise it without importing the runner that imports the suite.
"""

from __future__ import annotations

__all__ = ["SkipFigure"]


class SkipFigure(Exception):
    """This host cannot measure the figure; str() says why and how to make it possible."""
