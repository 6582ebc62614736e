"""Fuzz the preset loader and `--set` values: how many cases end in a traceback (must be 0).

Generates N cases (default 3,000, seeded) of the kinds issue 13 found: random and mutated bytes,
bytes that are not UTF-8, deeply nested arrays and inline tables, integers of thousands of digits,
dotted keys of up to 40,000 parts, files of up to 10 MB, every key of the schema with every wrong
type (in a file and through `--set`), and arbitrary `--set` text. Each case is loaded in process
with `config.load_preset` (the function the CLI calls) and classified:

- accepted: a Preset came back;
- refused: a PresetError whose message is one line of at most MAX_MESSAGE characters;
- traceback: any other exception (the CLI would print a traceback) - must be 0;
- bad message: a PresetError on several lines, or too long, or not naming the key it should;
- slow: more than 1 s for one case.

With `--cli K`, K of the refused cases are also run through the real command line
(`python -m basintui.cli run FILE [--set ...]`): each must exit 2 with one line on stderr and no
"Traceback". Exits 1 when any traceback, bad message, slow case or CLI failure was found.

    python benchmarks/fuzz_presets.py [--cases 3000] [--seed 0] [--cli 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from basintui import config
from basintui.config import SECTIONS, TOP_LEVEL, Preset, PresetError, load_preset, presets_dir

MAX_MESSAGE = 4 * getattr(config, "MAX_SHOWN", 200) + 800  # (getattr: the script also runs on older trees)
SLOW_S = 1.0
ROOT = Path(__file__).resolve().parent.parent


def schema_keys() -> dict[str, str]:
    out = {f.name: str(f.type) for f in dataclasses.fields(Preset) if f.name in TOP_LEVEL}
    for sec, cls in SECTIONS.items():
        out.update({f"{sec}.{f.name}": str(f.type) for f in dataclasses.fields(cls)})
    return out


KEYS = schema_keys()
BUILTIN = [p.read_bytes() for p in sorted(presets_dir().glob("*.toml"))]


@dataclasses.dataclass
class Case:
    kind: str
    data: bytes | None = None  # the preset file's bytes (None: the built-in default)
    sets: tuple[str, ...] = ()
    key: str = ""  # the key the error must name ("" = any)


# --------------------------------------------------------------------------- value text


def toml_str(s: str) -> str:
    return '"' + "".join("\\" + c if c in '"\\' else (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                         for c in s) + '"'


def rand_text(r: random.Random, n: int) -> str:
    alphabet = "abcxyz019 .,=[]{}\"'\\#\n\t-+_:é€😀\x00\x7f"
    return "".join(r.choice(alphabet) for _ in range(n))


def scalar(r: random.Random) -> str:
    return r.choice([
        lambda: str(r.randint(-(10**9), 10**9)),
        lambda: repr(r.uniform(-1e6, 1e6)),
        lambda: r.choice(["nan", "inf", "-inf", "+inf", "1e400", "-0.0", "1e-400"]),
        lambda: r.choice(["true", "false"]),
        lambda: toml_str(rand_text(r, r.randint(0, 30))),
        lambda: r.choice(["1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "1979-05-27 07:32:00.5+01:00"]),
        lambda: "9" * r.randint(20, 4300),
    ])()


def value(r: random.Random, depth: int = 0) -> str:
    roll = r.random()
    if depth < 3 and roll < 0.15:
        return "[" + ", ".join(value(r, depth + 1) for _ in range(r.randint(0, 4))) + "]"
    if depth < 3 and roll < 0.25:
        return "{" + ", ".join(f"k{i} = {value(r, depth + 1)}" for i in range(r.randint(0, 3))) + "}"
    return scalar(r)


def wrong_value(r: random.Random, declared: str) -> str:
    base = declared.replace(" | None", "")
    pool = {
        "int": ["1.5", "nan", "true", '"7"', "[1]", "{a = 1}", "1979-05-27", "07:32:00"],
        "float": ["true", '"0.1"', "[0.1]", "{a = 1}", "1979-05-27"],
        "bool": ["1", "0.0", '"true"', "[true]", "{a = true}", "1979-05-27"],
        "str": ["1", "2.5", "true", "['a']", "{a = 'b'}", "1979-05-27"],
    }.get(base, ["16", "1.5", "true", '"16,16"', "{a = 1}", "[1, 2.5]", "[1, 'x']", "[[1]]", "[true]"])
    return r.choice(pool)


def document(pairs: list[tuple[str, str]]) -> bytes:
    top = [f"{k} = {v}" for k, v in pairs if "." not in k]
    sections: dict[str, list[str]] = {}
    for k, v in pairs:
        if "." in k:
            sec, sub = k.split(".", 1)
            sections.setdefault(sec, []).append(f"{sub} = {v}")
    text = "\n".join(top) + "\n" + "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())
    return text.encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- the kinds of case


def random_bytes(r):
    return Case("random bytes", bytes(r.getrandbits(8) for _ in range(r.randint(0, 2000))))


def mutated_preset(r):
    data = bytearray(r.choice(BUILTIN))
    for _ in range(r.randint(1, 8)):
        pos = r.randrange(len(data))
        op = r.random()
        if op < 0.4:
            data[pos] = r.getrandbits(8)
        elif op < 0.7:
            data[pos:pos] = bytes(r.getrandbits(8) for _ in range(r.randint(1, 4)))
        else:
            del data[pos: pos + r.randint(1, 10)]
    return Case("mutated preset", bytes(data))


def not_utf8(r):
    data = r.choice(BUILTIN)
    pos = r.randrange(len(data))
    bad = r.choice([b"\xff", b"\xfe", b"\xc3", b"\xe9", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
    return Case("not UTF-8", data[:pos] + bad + data[pos:])


def deep(r):
    n = r.choice([r.randint(33, 200), r.randint(200, 5000), r.randint(5000, 100_000)])
    key = r.choice(sorted(KEYS))
    v = ("[" * n + "1" + "]" * n) if r.random() < 0.5 else ("{a = " * n + "1" + "}" * n)
    if r.random() < 0.3:
        v = v[: len(v) // 2]  # unclosed as well
    if r.random() < 0.5:
        return Case("deep nesting (--set)", None, (f"{key}={v}",), key)
    return Case("deep nesting (file)", document([(key, v)]))


def huge_int(r):
    key = r.choice(sorted(KEYS))
    v = r.choice(["", "-", "+"]) + "9" * r.randint(4301, 50_000)
    if r.random() < 0.5:
        return Case("huge integer (--set)", None, (f"{key}={v}",), key)
    return Case("huge integer (file)", document([(key, v)]))


def dotted(r):
    parts = r.choice([r.randint(3, 40), r.randint(40, 3000), r.randint(3000, 40_000)])
    key = ".".join(r.choice(["a", "b", '"q"', "'l'", "x_1"]) for _ in range(parts))
    where = r.random()
    if where < 0.3:
        return Case("dotted key (--set key)", None, (f"{key}=1",))
    if where < 0.6:
        return Case("dotted key (--set value)", None, (f"train.lr={{{key} = 1}}",), "train.lr")
    return Case("dotted key (file)", f"{key} = 1\n".encode())


def big_file(r):
    size = r.choice([2**20 + 1, 2 * 2**20, 10 * 2**20])
    filler = r.choice([b"#", b" ", b"\n", b"a"])
    return Case("big file", b"# " + filler * size)


def wrong_type(r):
    key = r.choice(sorted(KEYS))
    v = wrong_value(r, KEYS[key])
    if r.random() < 0.5:
        return Case("wrong type (--set)", None, (f"{key}={v}",), key)
    return Case("wrong type (file)", document([(key, v)]), (), key)


def any_document(r):
    pairs = [(r.choice(sorted(KEYS) + ["colour", "data.nn", "x.y"]), value(r)) for _ in range(r.randint(1, 6))]
    return Case("random document", document(pairs))


def any_set(r):
    key = r.choice(sorted(KEYS) + ["colour", "data.nn", "a.b.c", "", ".", "data."])
    text = r.choice([value(r), rand_text(r, r.randint(0, 80))])
    sep = "=" if r.random() < 0.95 else ""
    return Case("random --set", None, (f"{key}{sep}{text}",))


KINDS = [(random_bytes, 3), (mutated_preset, 5), (not_utf8, 3), (deep, 3), (huge_int, 2), (dotted, 2),
         (big_file, 0.2), (wrong_type, 5), (any_document, 4), (any_set, 4)]


# --------------------------------------------------------------------------- running


def run_case(case: Case, work: Path) -> tuple[str, str, float]:
    path = "default"
    if case.data is not None:
        f = work / "case.toml"
        f.write_bytes(case.data)
        path = str(f)
    t0 = time.perf_counter()
    try:
        load_preset(path, list(case.sets))
        outcome, detail = "accepted", ""
    except PresetError as exc:
        msg = str(exc)
        outcome, detail = "refused", msg
        if "\n" in msg or "\r" in msg or len(msg) > MAX_MESSAGE:
            outcome = "bad message"
        elif case.key and exc.key != case.key:
            outcome, detail = "bad message", f"names {exc.key!r}, expected {case.key!r}: {msg[:300]}"
    except BaseException as exc:  # noqa: BLE001 - counting them is the point
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome, detail = "traceback", "".join(traceback.format_exception_only(type(exc), exc))[:500]
    seconds = time.perf_counter() - t0
    if seconds > SLOW_S and outcome != "traceback":
        outcome = "slow"
    return outcome, detail, seconds


def run_cli(case: Case, work: Path) -> str:
    """'' when the CLI exits 2 with one line on stderr and no traceback; else what went wrong."""
    args = [sys.executable, "-m", "basintui.cli", "run"]
    if case.data is not None:
        f = work / "cli.toml"
        f.write_bytes(case.data)
        args.append(str(f))
    else:
        args.append("default")
    for s in case.sets:
        args += ["--set", s]
    env = dict(os.environ, COLUMNS="120", NO_COLOR="1")
    try:
        proc = subprocess.run(args, capture_output=True, cwd=ROOT, env=env, timeout=60)
    except (OSError, ValueError) as exc:  # an argument over 128 KiB, or with a NUL: no shell can pass it
        return f"skip: {exc}"
    err = proc.stderr.decode("utf-8", "replace")
    lines = err.strip().splitlines()
    if proc.returncode != 2 or "Traceback" in err or len(lines) != 1:
        return f"exit {proc.returncode}, {len(lines)} stderr lines: {err[-400:]}"
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cli", type=int, default=100, help="refused cases also run through the real CLI")
    args = ap.parse_args()
    r = random.Random(args.seed)
    makers = [m for m, _ in KINDS]
    weights = [w for _, w in KINDS]
    work = Path(tempfile.mkdtemp(prefix="basintui-fuzz-"))
    counts: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    failures: list[str] = []
    refused: list[Case] = []
    slowest, longest = 0.0, 0
    t_all = time.perf_counter()
    for i in range(args.cases):
        case = r.choices(makers, weights)[0](r)
        outcome, detail, seconds = run_case(case, work)
        counts[outcome] += 1
        by_kind.setdefault(case.kind, Counter())[outcome] += 1
        slowest = max(slowest, seconds)
        if outcome == "refused":
            longest = max(longest, len(detail))
            refused.append(case)
        elif outcome in ("traceback", "bad message", "slow"):
            failures.append(f"case {i} ({case.kind}, {seconds:.2f} s): {outcome}: {detail}")
    total_s = time.perf_counter() - t_all

    print(f"# fuzz_presets: {args.cases} cases, seed {args.seed}, {total_s:.1f} s in process")
    print()
    print("| kind | cases | accepted | refused | traceback | bad message | slow |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in sorted(by_kind):
        c = by_kind[kind]
        print(f"| {kind} | {sum(c.values())} | {c['accepted']} | {c['refused']} | {c['traceback']} | "
              f"{c['bad message']} | {c['slow']} |")
    print(f"| **all** | {args.cases} | {counts['accepted']} | {counts['refused']} | {counts['traceback']} | "
          f"{counts['bad message']} | {counts['slow']} |")
    print()
    print(f"tracebacks: {counts['traceback']}; slowest case {slowest:.3f} s; longest message {longest} characters")

    cli_bad = 0
    if args.cli and refused:
        sample = r.sample(refused, min(args.cli, len(refused)))
        t0 = time.perf_counter()
        skipped = 0
        for case in sample:
            problem = run_cli(case, work)
            if problem.startswith("skip"):
                skipped += 1
            elif problem:
                cli_bad += 1
                failures.append(f"CLI ({case.kind}): {problem}")
        print(f"CLI: {len(sample) - skipped} refused cases run as `basintui run`: {cli_bad} did not exit 2 with one "
              f"line and no traceback ({skipped} skipped: an argument no OS can pass, over 128 KiB or with a NUL byte); {time.perf_counter() - t0:.1f} s")
    for line in failures[:20]:
        print(" -", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
