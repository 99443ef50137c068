#!/usr/bin/env python3
"""Runs the gradsparse benchmark: ``python bench/run_bench.py [options]``.

A thin wrapper around ``gradsparse.bench.main`` (same options as
``python -m gradsparse.bench --help``). The benchmark package of this source tree
(python/gradsparse/bench/) is used when it exists, with the installed gradsparse
package (and its compiled core); otherwise the installed ``gradsparse.bench``.
"""
import importlib.util
import os
import sys


def _load_bench():
    import gradsparse

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "python", "gradsparse", "bench")
    here = os.path.normpath(here)
    init = os.path.join(here, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location("gradsparse.bench", init, submodule_search_locations=[here])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["gradsparse.bench"] = mod
        spec.loader.exec_module(mod)
        gradsparse.bench = mod
        return mod
    import gradsparse.bench as mod

    return mod


if __name__ == "__main__":
    sys.exit(_load_bench().main())
