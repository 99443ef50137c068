"""The C++ sources keep their layering (house style, "Layers"): dependencies point down
only, core < select, wire, decomp (siblings: none includes another) < atomo, evofed, cuda (the
CUDA engine: kernels over select's order keys); there is one
SIMD dispatch switch (cpp/src/core/dispatch.hpp); and no source file other than a per-ISA
kernel file grows past 600 lines. Parses the #include lines; needs no build."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "cpp" / "src"
INCLUDE = ROOT / "cpp" / "include"

RANK = {"core": 0, "select": 1, "wire": 1, "decomp": 1, "atomo": 2, "evofed": 2, "cuda": 2}
# public headers (cpp/include/gradsparse) by the family that implements them
PUBLIC = {"common": "core", "parallel": "core", "simd": "core", "select": "select", "wire": "wire",
          "decomp": "decomp", "atomo": "atomo", "evofed": "evofed"}
PER_ISA = re.compile(r"_(avx2|avx512|neon|sve)\.cpp$")
MAX_LINES = 600
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def _family_of_include(src: Path, name: str) -> str | None:
    if name.startswith("gradsparse/"):
        return PUBLIC.get(Path(name).stem)
    first = name.split("/")[0]
    if "/" in name and first in RANK:
        return first
    local = src.parent / name  # relative to the including file
    if local.exists():
        return local.resolve().relative_to(SRC.resolve()).parts[0]
    return None


def _sources():
    return sorted(p for p in SRC.rglob("*") if p.suffix in (".cpp", ".hpp", ".h", ".cu", ".cuh"))


def test_includes_point_down_only():
    bad = []
    for src in _sources():
        family = src.relative_to(SRC).parts[0]
        assert family in RANK, f"{src.relative_to(ROOT)}: directory {family!r} has no layer in test_layering.py"
        for name in INCLUDE_RE.findall(src.read_text()):
            target = _family_of_include(src, name)
            assert target is not None, f"{src.relative_to(ROOT)}: cannot place #include \"{name}\""
            if target == family:
                continue
            if RANK[target] >= RANK[family]:
                bad.append(f"{src.relative_to(ROOT)} ({family}) includes \"{name}\" ({target})")
    for hdr in sorted(INCLUDE.rglob("*.hpp")):
        family = PUBLIC[hdr.stem]
        for name in INCLUDE_RE.findall(hdr.read_text()):
            target = _family_of_include(hdr, name)
            if target != family and (target is None or RANK[target] >= RANK[family]):
                bad.append(f"{hdr.relative_to(ROOT)} ({family}) includes \"{name}\" ({target})")
    assert not bad, "upward or sideways includes:\n  " + "\n  ".join(bad)


def test_one_dispatch_switch():
    hits = [(p.relative_to(ROOT), n) for p in _sources()
            for n, line in enumerate(p.read_text().splitlines(), 1) if "switch (current_simd_level())" in line]
    assert len(hits) == 1 and hits[0][0] == Path("cpp/src/core/dispatch.hpp"), hits


def test_source_files_stay_small():
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in _sources()
           if not PER_ISA.search(p.name) and (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, f"files over {MAX_LINES} lines (split them by purpose):\n  " + "\n  ".join(big)
