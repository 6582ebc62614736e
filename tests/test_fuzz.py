"""Hypothesis fuzz of the preset loader and of `--set` values, in process against `load_preset` (the
function the CLI, the app and the server call): whatever the bytes or the value, the result is a Preset
or a PresetError whose message is one short line naming the key, never another exception (which the
CLI would print as a traceback). About 1,400 examples per run, a few seconds; no torch.

benchmarks/fuzz_presets.py is the long version of this (3,000 cases and the real command line)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basintui.config import (
    MAX_SHOWN,
    SECTIONS,
    TOP_LEVEL,
    Preset,
    PresetError,
    load_preset,
)

DEFAULT = (Path(__file__).resolve().parent.parent / "presets" / "default.toml").read_bytes()
WORK = Path(tempfile.mkdtemp(prefix="basintui-fuzz-"))
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
MAX_MESSAGE = 4 * MAX_SHOWN + 800  # a clipped value, the allowed text, the path


def _field_types() -> dict[str, str]:
    out = {k: str(f.type) for k, f in ((f.name, f) for f in dataclasses.fields(Preset)) if k in TOP_LEVEL}
    for sec, cls in SECTIONS.items():
        out.update({f"{sec}.{f.name}": str(f.type) for f in dataclasses.fields(cls)})
    return out


KEYS = _field_types()  # every key of the schema and its declared type


def _check(call) -> PresetError | None:
    """Run the loader: a Preset, or a PresetError of one short line. Anything else fails the test."""
    try:
        result = call()
    except PresetError as exc:
        msg = str(exc)
        assert "\n" not in msg and "\r" not in msg, msg[:500]
        assert len(msg) <= MAX_MESSAGE, (len(msg), msg[:500])
        assert exc.key and str(exc.key)[:20] in msg or exc.key in ("TOML", "preset")
        return exc
    assert isinstance(result, Preset)
    return None


def _load_bytes(data: bytes, overrides=()):
    f = WORK / "fuzz.toml"
    f.write_bytes(data)
    return _check(lambda: load_preset(str(f), list(overrides)))


# --------------------------------------------------------------------------- TOML value text


def toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


ints = st.integers(-(10**20), 10**20).map(str)
huge_ints = st.integers(4_301, 6_000).map(lambda n: "9" * n)
big_ints = st.integers(20, 4_300).map(lambda n: "9" * n)
floats = st.floats(allow_nan=True, allow_infinity=True).map(toml_float)
bools = st.sampled_from(["true", "false"])
strings = st.text(max_size=40).map(toml_str)
long_strings = st.integers(300, 20_000).map(lambda n: toml_str("z" * n))
dates = st.sampled_from(["1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "1979-05-27 07:32:00.999"])
deep = st.tuples(st.integers(2, 4_000), st.sampled_from(["[", "{"])).map(
    lambda t: ("[" * t[0] + "1" + "]" * t[0]) if t[1] == "[" else ("{a = " * t[0] + "1" + "}" * t[0]))
scalars = st.one_of(ints, floats, bools, strings, dates)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(st.from_regex(r"[a-z]{1,3}", fullmatch=True), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=8,
)
any_value = st.one_of(values, huge_ints, big_ints, long_strings, deep)


def wrong_values(declared: str) -> st.SearchStrategy[str]:
    """TOML values whose type is wrong for a field declared as `declared`."""
    base = declared.replace(" | None", "")
    lists_of_int = st.lists(ints, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
    table = st.just("{a = 1}")
    if base == "int":
        return st.one_of(floats, bools, strings, dates, lists_of_int, table)
    if base == "float":
        return st.one_of(bools, strings, dates, lists_of_int, table)
    if base == "bool":
        return st.one_of(ints, floats, strings, dates, lists_of_int, table)
    if base == "str":
        return st.one_of(ints, floats, bools, dates, lists_of_int, table)
    if base == "int | str":  # analysis.probe: a count or a file
        return st.one_of(floats, bools, dates, lists_of_int, table)
    # tuple[int, ...]
    return st.one_of(ints, floats, bools, strings, dates, table,
                     st.lists(st.one_of(floats, strings, bools), min_size=1, max_size=3).map(
                         lambda xs: "[1, " + ", ".join(xs) + "]"))


def _document(key: str, value: str) -> bytes:
    if "." in key:
        sec, sub = key.split(".")
        return f"[{sec}]\n{sub} = {value}\n".encode()
    return f"{key} = {value}\n".encode()


# --------------------------------------------------------------------------- the fuzz


@settings(FUZZ, max_examples=350)
@given(st.one_of(
    st.binary(max_size=600),
    st.tuples(st.lists(st.tuples(st.integers(0, len(DEFAULT) - 1), st.binary(min_size=1, max_size=3)),
                       min_size=1, max_size=6)).map(
        lambda t: _mutate(DEFAULT, t[0])),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xfe\xff"]).map(lambda b: DEFAULT[:40] + b + DEFAULT[40:]),
))
def test_any_bytes_give_a_preset_or_one_line(data):
    _load_bytes(data)


def _mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for pos, new in edits:
        out[pos: pos + len(new)] = new
    return bytes(out)


@settings(FUZZ, max_examples=350)
@given(st.lists(st.tuples(st.one_of(st.sampled_from(sorted(KEYS)), st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6})?",
                                                                                  fullmatch=True)),
                          any_value), min_size=1, max_size=4),
       st.integers(0, 60_000))
def test_documents_of_any_keys_and_values_name_the_key(pairs, dotted_parts):
    doc = b"".join(_document(k, v) if k.count(".") <= 1 else b"" for k, v in pairs)
    if dotted_parts > 30_000:  # an absurd dotted key as well
        doc += b"a" + b".a" * (dotted_parts - 30_000) + b" = 1\n"
    exc = _load_bytes(doc)
    if exc is not None and exc.key not in ("TOML", "preset"):
        assert exc.key.split(".")[0] in doc.decode("utf-8", "replace")


@settings(FUZZ, max_examples=400)
@given(st.sampled_from(sorted(KEYS)).flatmap(lambda k: st.tuples(st.just(k), wrong_values(KEYS[k]))),
       st.booleans())
def test_every_key_with_every_wrong_type_names_that_key(key_value, through_set):
    key, value = key_value
    if through_set:
        exc = _check(lambda: load_preset("default", [f"{key}={value}"]))
    else:
        exc = _load_bytes(_document(key, value))
    assert exc is not None, (key, value)
    assert exc.key == key, (key, value, str(exc)[:300])
    assert key in str(exc)


@settings(FUZZ, max_examples=300)
@given(st.sampled_from(sorted(KEYS)),
       st.one_of(any_value, st.text(max_size=60), st.text(alphabet="[]{}=.,\"'\\\n #", max_size=60)))
def test_set_values_of_any_text_give_a_preset_or_name_the_key(key, text):
    exc = _check(lambda: load_preset("default", [f"{key}={text}"]))
    if exc is not None:
        assert exc.key in (key, "TOML", "preset") or exc.key.startswith(key.split(".")[0]), (key, str(exc)[:300])
        if exc.key == key:
            assert key in str(exc)
