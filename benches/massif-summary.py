#!/usr/bin/env python3
"""The peak heap of a massif profile (benches/heap-profile.sh), by where it was allocated.

massif's own tree starts at the allocator's callers (`finish_grow`, `ZSTD_createDCtx`...),
which say little; each allocation here is attributed to the first frame of the project's own
code (`flowrec::`, `flow_schema::`) on its stack, followed by the frame the allocation came from
and the library frame just below the project's. Usage: massif-summary.py massif.out [MIN_PERCENT]
"""
import re
import sys
from collections import defaultdict

OURS = re.compile(r"\b(flowrec|flow_schema|hubble_api)::")
NODE = re.compile(r"^(\s*)n(\d+): (\d+) (.*)$")


def frame(description):
    # "0xB9A07E: alloc::raw_vec::...::finish_grow (in /path)" -> the function
    text = re.sub(r"^0x[0-9A-F]+: ", "", description)
    return re.sub(r" \(in .*\)$| \([^)]*:\d+\)$", "", text)


def peak_tree(lines):
    start = None
    for i, line in enumerate(lines):
        if line.startswith("heap_tree=peak"):
            start = i + 1
    if start is None:
        sys.exit("massif-summary: no peak snapshot in the profile")
    nodes = []
    for line in lines[start:]:
        match = NODE.match(line)
        if not match:
            break
        nodes.append((len(match.group(1)), int(match.group(3)), frame(match.group(4))))
    return nodes


def leaves(nodes):
    """(bytes, stack from the allocator outwards) of every leaf of the tree."""
    stack = []
    for index, (depth, size, name) in enumerate(nodes):
        del stack[depth:]
        stack.append(name)
        next_depth = nodes[index + 1][0] if index + 1 < len(nodes) else -1
        if next_depth <= depth and depth > 0:
            yield size, list(stack[1:])


def main():
    lines = open(sys.argv[1]).read().splitlines()
    minimum = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    nodes = peak_tree(lines)
    total = nodes[0][1]
    sites = defaultdict(int)
    for size, stack in leaves(nodes):
        ours = next((i for i, name in enumerate(stack) if OURS.search(name)), None)
        if ours is None:
            key = ("(no frame of ours: " + stack[-1][:60] + ")", stack[0][:60])
        else:
            below = stack[ours - 1] if ours > 0 else "-"
            key = (stack[ours][:90], below[:70])
        sites[key] += size
    print(f"peak heap {total / 2**20:.1f} MiB (live bytes, massif)")
    print(f"{'MiB':>6} {'%':>5}  where (first frame of ours) <- the call below it")
    for (ours, below), size in sorted(sites.items(), key=lambda kv: -kv[1]):
        share = 100 * size / total
        if share >= minimum:
            print(f"{size / 2**20:6.1f} {share:5.1f}  {ours}  <- {below}")
    rest = sum(s for s in sites.values() if 100 * s / total < minimum)
    print(f"{rest / 2**20:6.1f} {100 * rest / total:5.1f}  (sites under {minimum}% each)")


main()
