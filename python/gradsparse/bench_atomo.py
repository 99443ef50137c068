"""Kept so that ``python -m gradsparse.bench_atomo`` still runs the ATOMO benchmark, which now
lives in :mod:`gradsparse.bench.atomo` (also ``python -m gradsparse.bench --suite atomo``)."""
from .bench.atomo import main

if __name__ == "__main__":
    main()
