"""Peak memory and time of importing one large Jaeger JSON export, streamed trace by trace.

    python bench/bench_json_import.py [--traces 60000] [--no-write]

Writes a synthetic Jaeger export (each trace a root and ten children over three services) in the
layouts tools write: one document with indents, one document on a single line (the Jaeger UI's
download) and a document per line, and imports each in a process of its own, as `deeprest
import --format jaeger` does. Beside them, in the same run, the cost of only reading the
document whole with the standard library (`json.load`), which importing held before documents
were streamed. Every layout must give the same windows.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

MEASURE = """
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
if sys.argv[1] == "json.load":
    with open(sys.argv[2], encoding="utf-8") as handle:
        json.load(handle)
    digest = ""
else:
    from estimator.importers.jaeger import import_jaeger
    windows = import_jaeger(Path(sys.argv[2]))
    digest = json.dumps([sorted(map(str, w.calls.items())) for w in windows])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak, "digest": digest}))
"""


def trace(rng: random.Random, t: int, start_us: int) -> dict:
    """One trace of a root span and ten children over three services, as Jaeger exports it."""
    tid = f"{rng.getrandbits(128):032x}"
    tags = [{"key": "span.kind", "type": "string", "value": "server"}]
    spans = [
        {
            "traceID": tid,
            "spanID": f"{1:016x}",
            "operationName": "GET /api",
            "references": [],
            "startTime": start_us,
            "duration": 5000,
            "processID": "p1",
            "tags": tags,
            "logs": [],
        }
    ]
    for k in range(2, 12):
        spans.append(
            {
                "traceID": tid,
                "spanID": f"{k:016x}",
                "operationName": f"op{(k + t) % 4}",
                "references": [{"refType": "CHILD_OF", "traceID": tid, "spanID": f"{1:016x}"}],
                "startTime": start_us + k,
                "duration": 1000,
                "processID": f"p{k % 3 + 1}",
                "tags": tags,
                "logs": [],
            }
        )
    processes = {f"p{i}": {"serviceName": f"svc{i}", "tags": []} for i in (1, 2, 3)}
    return {"traceID": tid, "spans": spans, "processes": processes, "warnings": None}


def write_layouts(folder: Path, n: int) -> dict[str, Path]:
    """The same traces as an indented document, a one-line document and a document per line,
    written as they are made (this process holds one trace at a time: a child process's peak
    memory starts at its parent's, as Linux counts it)."""
    rng = random.Random(1)
    start = 1_675_080_000_000_000  # 2023-01-30 12:00 UTC, in microseconds
    paths = {
        "one document, indented": folder / "indented.json",
        "one document, one line (Jaeger UI download)": folder / "one-line.json",
        "a document per line": folder / "per-line.json",
    }
    files = [path.open("w", encoding="utf-8") for path in paths.values()]
    indented, one_line, per_line = files
    indented.write('{\n  "data": [\n')
    one_line.write('{"data": [')
    for t in range(n):
        item = trace(rng, t, start + t * 20_000)
        indented.write(("    ,\n" if t else "") + json.dumps(item, indent=2) + "\n")
        one_line.write((", " if t else "") + json.dumps(item))
        per_line.write(json.dumps({"data": [item]}) + "\n")
    indented.write('  ],\n  "total": 0,\n  "limit": 0,\n  "offset": 0,\n  "errors": null\n}\n')
    one_line.write('], "total": 0, "limit": 0, "offset": 0, "errors": null}')
    for handle in files:
        handle.close()
    return paths


def measure(how: str, path: Path) -> dict:
    """Seconds, peak resident MiB and a digest of the windows of one import in its own process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, how, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=60_000)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_layouts(Path(tmp), args.traces)
        digests = set()
        for name, path in paths.items():
            got = measure("import", path)
            digests.add(got["digest"])
            rows.append((f"`deeprest import`, {name}", path.stat().st_size, got))
        whole = paths["one document, indented"]
        rows.append(
            (
                "`json.load` of the indented document alone",
                whole.stat().st_size,
                measure("json.load", whole),
            )
        )
    if len(digests) != 1:
        print("error: the layouts gave different windows", file=sys.stderr)
        return 1
    lines = [
        f"| {name} | {size / 2**20:,.0f} | {got['seconds']:.1f} | {got['peak_mib']:,.0f} |"
        for name, size, got in rows
    ]
    for line in lines:
        print(line)
    if not args.no_write:
        write_section(
            "import-json",
            "## Importing a large Jaeger export\n\n"
            f"`python bench/bench_json_import.py` on {platform.machine()}: {args.traces:,} "
            f"synthetic traces of 11 spans ({11 * args.traces:,} spans) in three layouts, each "
            "imported in a process of its own; every layout gave the same windows (checked in the "
            "run). A document is streamed trace by trace (ijson), so memory holds a batch of "
            "spans, not the file; the last row is what reading the document whole costs before "
            "any span is counted.\n\n"
            "| input | file MiB | seconds | peak MiB |\n|---|---|---|---|\n" + "\n".join(lines),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
