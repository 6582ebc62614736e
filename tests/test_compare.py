"""Reopen and compare, headless (issue 15): render/compare.py on the stored real reports (exact values in
the JSON form, a report against itself, null sections of a cancelled run or the layers off, the table at 80
columns) and cli_reports.py's `open` and `compare` (every bad input: one line on stderr, exit 2)."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from conftest import ROOT
from rich.console import Console

from basintui import cli_reports
from basintui.render.compare import (
    COMPARISON_SCHEMA,
    QUANTITIES,
    compare,
    comparison_json,
    comparison_table,
)
from basintui.schema import encode_report, load_report

REPORTS = ROOT / "tests" / "fixtures" / "reports"
NAMES = sorted(p.stem for p in REPORTS.glob("*.json"))


def report(name: str):
    return load_report(REPORTS / f"{name}.json")


def raw(name: str) -> dict:
    return json.loads((REPORTS / f"{name}.json").read_text())


def as_json(a: str, b: str) -> dict:
    return comparison_json(compare(report(a), report(b), a, b))


def render(renderable, width: int = 80) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, color_system=None).print(renderable)
    return buf.getvalue()


# --------------------------------------------------------------------------- the facts, exactly


def test_xor_relu_against_collapse():
    j = as_json("xor-relu", "collapse")
    assert j["schema"] == COMPARISON_SCHEMA
    assert j["a"] == {"label": "xor-relu", "preset": "xor-relu"} and j["b"] == {"label": "collapse", "preset": "collapse"}
    diffs = {d["key"]: (d["a"], d["b"]) for d in j["config_differences"]}
    assert diffs.pop("description") == (raw("xor-relu")["config"]["description"], raw("collapse")["config"]["description"])
    assert diffs == {
        "name": ("xor-relu", "collapse"), "data.kind": ("xor", "gaussian"), "data.n": (4, 56), "data.dim": (None, 3),
        "data.targets": ("labels", "teacher"), "model.hidden": ([4], [2, 32, 32]), "train.lr": (0.05, 0.01),
        "train.steps": (2000, 200), "train.target_loss": (1e-10, 0.0), "analysis.hessian": ("auto", "off"),
        "analysis.levelset": (True, False), "analysis.probe": (0, 56), "analysis.llc": (False, True),
        "analysis.slices": (False, True), "llc.draws": (400, 200), "llc.burnin": (200, 100)}
    q = {k: (v["a"], v["b"]) for k, v in j["quantities"].items()}
    assert list(q) == list(QUANTITIES)
    xa, xb = raw("xor-relu"), raw("collapse")
    assert q == {
        "status": ("converged", "max_steps"), "steps": (196, 200),
        "final_loss": (xa["training"]["final_loss"], xb["training"]["final_loss"]),
        "N": (17, 1193), "k": (4, 56), "d": (1, 1), "kd": (4, 56), "rank": (3, 44), "rank_exact": (True, True),
        "tolerance": (xa["G"]["tolerance"], xb["G"]["tolerance"]), "kernel_dim": (17 - 3, 1193 - 44),
        "regime": ("over", "over"), "claim3": ("holds_up_to_residual", None)}  # collapse ran with the Hessian off
    assert [k for k, v in j["quantities"].items() if v["same"]] == ["d", "rank_exact", "regime"]
    assert [(p["position"], p["index"], p["bits_lost_here"]) for p in j["layers"]["a"]] == [(1, 1, 0.5), (2, 2, 0.0)]
    # the stored ranking, as the report says: block 1 merges inputs; block 3 loses 5 ranks beyond its width
    # (dead units); blocks 4 and 2 lose nothing (4's drop is forced by its width) and go by deficiency 21, 16
    assert [p["index"] for p in j["layers"]["b"]] == [1, 3, 4, 2]
    assert [p["excess_rank_drop"] for p in j["layers"]["b"]] == [0, 5, 0, 0]  # block 3: 17 → 12 at width 32
    assert j["layers"]["a_why"] is None and j["layers"]["b_why"] is None


@pytest.mark.parametrize("name", NAMES)
def test_a_report_against_itself_differs_nowhere(name):
    j = as_json(name, name)
    assert j["config_differences"] == []
    assert all(v["same"] for v in j["quantities"].values())
    assert j["layers"]["a"] == j["layers"]["b"]
    text = render(comparison_table(compare(report(name), report(name), name, name)))
    assert not any(line.startswith("≠") for line in text.splitlines())
    assert "Presets: no differences" in text


def test_a_cancelled_run_and_a_run_without_layers():
    j = as_json("lanczos", "cancelled")
    q = j["quantities"]
    assert [k for k, v in q.items() if v["b"] is None] == ["rank", "rank_exact", "tolerance", "kernel_dim", "regime",
                                                           "claim3"]
    # the stored run was cancelled at step 50 (the step it stopped at depends on when the cancel was seen)
    assert (q["status"]["b"], q["N"]["b"], q["kd"]["b"]) == ("cancelled", 1193, 56) and q["steps"]["b"] in (50, 51)
    assert (q["rank"]["a"], q["rank_exact"]["a"], q["claim3"]["a"]) == (3, False, "not_applicable")  # top-k only
    assert j["layers"] == {"a": None, "b": None, "a_why": "off (analysis.layers = false)", "b_why": "cancelled"}
    text = render(comparison_table(compare(report("lanczos"), report("cancelled"), "lanczos", "cancelled")))
    assert text.count("not computed") == 6
    assert "off (analysis.layers = false)" in text and "cancelled" in text


def test_nothing_computed_at_all_and_nan_losses():
    r = report("cancelled")
    bare = msgspec.structs.replace(r, model=None, data=None, device=None, training=msgspec.structs.replace(
        r.training, final_loss=float("nan")))
    j = comparison_json(compare(bare, bare, "x", "x"))
    q = j["quantities"]
    assert [k for k, v in q.items() if v["a"] is None] == ["N", "k", "d", "kd", "rank", "rank_exact", "tolerance",
                                                           "kernel_dim", "regime", "claim3"]
    assert q["final_loss"] == {"a": "nan", "b": "nan", "same": True}
    json.dumps(j, allow_nan=False)  # plain JSON: no bare NaN
    assert "not computed" in render(comparison_table(compare(bare, r, "x", "y")))


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("a, b", [(a, b) for a in NAMES for b in NAMES if a < b])
def test_the_table_fits_80_columns_and_marks_what_differs(a, b):
    c = compare(report(a), report(b), str(REPORTS / f"{a}.json"), str(REPORTS / f"{b}.json"))
    text = render(comparison_table(c), 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    j = comparison_json(c)
    for key, label in QUANTITIES.items():
        line = next(line for line in lines if line[3:].startswith(label + " "))
        assert line.startswith("≠") == (not j["quantities"][key]["same"]), key
    for d in j["config_differences"]:
        assert any(line.startswith("≠") and line[3:].startswith(d["key"] + " ") for line in lines), d["key"]


def test_labels_and_names_with_brackets_show_literally():
    r = report("xor-relu")
    odd = msgspec.structs.replace(r, layers=[msgspec.structs.replace(b, name="net[i]") for b in r.layers])
    text = render(comparison_table(compare(r, odd, "[bold]a.json", "[i]")), 80)
    assert "[bold]a.json" in text and "B [i]" in text and "net[i] (0.5 bits here)" in text


# --------------------------------------------------------------------------- the commands


def ns(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def test_compare_prints_the_table_and_exits_0(capsys):
    a, b = REPORTS / "xor-relu.json", REPORTS / "collapse.json"
    assert cli_reports.cmd_compare(ns(a=str(a), b=str(b), json=False)) == 0
    out, err = capsys.readouterr()
    assert err == "" and "A beside B" in out and "rank(G)" in out and "Layer ranking" in out


def test_compare_json_is_comparison_json(capsys):
    a, b = REPORTS / "lanczos.json", REPORTS / "cancelled.json"
    assert cli_reports.cmd_compare(ns(a=str(a), b=str(b), json=True)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == comparison_json(compare(load_report(a), load_report(b), str(a), str(b)))


def test_open_hands_a_good_report_to_the_app(monkeypatch):
    from basintui.tui import app

    seen = []
    monkeypatch.setattr(app, "open_main", lambda rep, path: seen.append((rep, path)) or 7)
    path = REPORTS / "critique.json"
    assert cli_reports.cmd_open(ns(report=str(path))) == 7
    assert seen == [(load_report(path), path)]


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, words the error line must contain)."""
    newer = raw("xor-relu")
    newer["schema"] = "basintui.report/9"
    files = {
        "missing": (tmp_path / "nope.json", None, "no such file"),
        "directory": (tmp_path / "dir", None, "is a directory"),
        "empty": (tmp_path / "empty.json", "", "it is empty"),
        "not JSON": (tmp_path / "text.json", "hello, world", "not JSON"),
        "binary": (tmp_path / "bin.json", b"\xff\xfe\x00\x01", "not JSON"),
        "a JSON list": (tmp_path / "list.json", "[1, 2, 3]", "not an object"),
        "another shape": (tmp_path / "other.json", '{"name": "x"}', "`schema` is missing"),
        "another format": (tmp_path / "format.json", '{"schema": "other/1"}', "not a basintui report"),
        "newer schema": (tmp_path / "newer.json", json.dumps(newer), "a newer basintui wrote it"),
        "broken field": (tmp_path / "field.json", raw_with_bad_rank(), "$.G.rank"),
    }
    (tmp_path / "dir").mkdir()
    out = {}
    for name, (path, content, words) in files.items():
        if isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        out[name] = (path, words)
    return out


def raw_with_bad_rank() -> str:
    r = raw("xor-relu")
    r["G"]["rank"] = "three"
    return json.dumps(r)


def _one_error_line(capsys, path: Path, words: str) -> None:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith(f"basintui: error: {path}: ") and words in lines[0], lines[0]


def test_every_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from basintui.tui import app

    monkeypatch.setattr(app, "open_main", lambda rep, path: pytest.fail("the app opened a bad report"))
    good = REPORTS / "xor-relu.json"
    for name, (path, words) in _bad_files(tmp_path).items():
        assert cli_reports.cmd_open(ns(report=str(path))) == 2, name
        _one_error_line(capsys, path, words)
        for a, b in ((path, good), (good, path)):
            assert cli_reports.cmd_compare(ns(a=str(a), b=str(b), json=False)) == 2, name
            _one_error_line(capsys, path, words)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path, capsys):
    path = tmp_path / "locked.json"
    path.write_bytes(encode_report(report("critique")))
    path.chmod(0)
    assert cli_reports.cmd_compare(ns(a=str(path), b=str(path), json=True)) == 2
    _one_error_line(capsys, path, "cannot be read (Permission denied)")


def test_the_subcommands_parse():
    p = argparse.ArgumentParser(prog="basintui")
    sub = p.add_subparsers(dest="command")
    cli_reports.add_parsers(sub)
    args = p.parse_args(["compare", "a.json", "b.json", "--json"])
    assert (args.command, args.a, args.b, args.json, args.handler) == ("compare", "a.json", "b.json", True,
                                                                       cli_reports.cmd_compare)
    args = p.parse_args(["compare", "a.json", "b.json"])
    assert args.json is False
    args = p.parse_args(["open", "r.json"])
    assert (args.command, args.report, args.handler) == ("open", "r.json", cli_reports.cmd_open)
    with pytest.raises(SystemExit):
        p.parse_args(["compare", "a.json"])


def test_comparing_reports_does_not_import_torch():
    code = ("import sys, argparse\nfrom basintui import cli_reports\n"
            f"rc = cli_reports.cmd_compare(argparse.Namespace(a={str(REPORTS / 'xor-relu.json')!r}, "
            f"b={str(REPORTS / 'cancelled.json')!r}, json=False))\n"
            "print('RC', rc, 'TORCH' if 'torch' in sys.modules else 'NOTORCH')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)
    assert proc.stdout.splitlines()[-1] == "RC 0 NOTORCH", proc.stderr


def basintui(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "basintui"
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-c", "from basintui.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_the_installed_command_compares_and_refuses_bad_files(tmp_path):
    a, b = REPORTS / "xor-relu.json", REPORTS / "collapse.json"
    proc = basintui("compare", str(a), str(b), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == comparison_json(compare(load_report(a), load_report(b), str(a), str(b)))
    assert data["quantities"]["rank"]["a"] == 3
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**raw("xor-relu"), "schema": "basintui.report/9"}))
    for args, words in ((("open", str(tmp_path / "missing.json")), "no such file"),
                        (("open", str(newer)), "a newer basintui wrote it"),
                        (("compare", str(a), str(ROOT / "README.md")), "not JSON")):
        proc = basintui(*args)
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and words in proc.stderr, proc.stderr
    assert "open" in basintui("--help").stdout and "compare" in basintui("--help").stdout
