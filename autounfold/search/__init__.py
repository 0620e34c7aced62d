"""Distributed TPE search on Ray Tune. ``trial`` and ``results`` are Ray-free; ``runner`` imports Ray
when a search runs. Entry point: ``run_search(spec, out, ...)``."""


def run_search(*args, **kwargs):
    from .runner import run_search as _run
    return _run(*args, **kwargs)
