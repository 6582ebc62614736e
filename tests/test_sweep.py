"""Sweeps, the fast set: grid and seed parsing, the Wilson interval against known values, the journal and
the driver's retry / resume / cancel logic on a fake backend, bad grids (exit 2, every offending point
listed), and a deep-linear sweep in process whose every rank is the Singh formula."""

from __future__ import annotations

import threading

import pytest

from basintui import cli
from basintui.schema.sweep import RunRow, decode_summary
from basintui.sweep import summary as summ
from basintui.sweep.driver import drive
from basintui.sweep.grid import (
    GridError,
    check_points,
    parse_grid,
    parse_seeds,
    point_sets,
    toml_value,
)
from basintui.sweep.journal import Journal, pair
from basintui.sweep.task import Task

# --------------------------------------------------------------------------- grid and seeds


def test_grid_is_the_cartesian_product_in_order():
    g = parse_grid(["model.hidden=[[2],[4]]", "train.lr=[0.1, 0.01, 1e-3]"])
    pts = g.points()
    assert len(pts) == 6
    assert pts[0] == {"model.hidden": [2], "train.lr": 0.1}
    assert pts[-1] == {"model.hidden": [4], "train.lr": 1e-3}
    assert parse_grid([]).points() == [{}]


@pytest.mark.parametrize("item,words", [
    ("model.hidden=4", "non-empty TOML array"),
    ("model.hidden=[]", "non-empty TOML array"),
    ("seed=[1,2]", "--seeds"),
    ("nokey", "KEY=VALUE"),
])
def test_bad_grid_items_say_why(item, words):
    with pytest.raises(GridError, match=words):
        parse_grid([item])


def test_a_key_gridded_twice_is_refused():
    with pytest.raises(GridError, match="already gridded"):
        parse_grid(["train.lr=[1]", "train.lr=[2]"])


def test_seeds():
    assert parse_seeds(3, None) == [0, 1, 2]
    assert parse_seeds(None, "7, 3,11") == [7, 3, 11]
    for count, lst in ((0, None), (None, "a,b"), (None, "1,1"), (None, "-1"), (None, str(2**32))):
        with pytest.raises(GridError):
            parse_seeds(count, lst)


def test_point_sets_round_trip_through_the_preset_loader():
    from basintui.config import load_preset

    point = {"model.hidden": [3, 2], "train.lr": 0.25, "model.activation": "tanh", "model.bias": False}
    p = load_preset("xor-relu", point_sets(point, 5))
    assert (p.model.hidden, p.train.lr, p.model.activation, p.model.bias, p.seed) == ((3, 2), 0.25, "tanh", False, 5)
    assert toml_value('a"b') == '"a\\"b"'


def test_check_points_lists_every_offending_point():
    g = parse_grid(["model.hidden=[[2],[-1],[3]]", "train.loss=[\"mse\", \"nope\"]"])
    c = check_points("xor-relu", [], g, 0, workers=1)
    assert len(c.points) == 2 and all(p["train.loss"] == "mse" and p["model.hidden"] != [-1] for p in c.points)
    assert len(c.offending) == 4
    assert any("train.loss" in o.why and "nope" in o.why for o in c.offending)


def test_the_memory_guard_refuses_a_point_that_does_not_fit():
    g = parse_grid(["data.n=[4, 400000]"])
    c = check_points("default", ["analysis.route=\"explicit\""], g, 0, workers=2, available_bytes=64 * 2**20)
    assert [p["data.n"] for p in c.points] == [4]
    assert [o.point["data.n"] for o in c.offending] == [400000]
    assert "memory guard" in c.offending[0].why


# --------------------------------------------------------------------------- Wilson intervals


@pytest.mark.parametrize("x,n,low,high", [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (1, 20, 0.0089, 0.2361),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_known_values(x, n, low, high):
    iv = summ.wilson(x, n)
    assert iv.fraction == pytest.approx(x / n)
    assert iv.low == pytest.approx(low, abs=5e-5) and iv.high == pytest.approx(high, abs=5e-5)


def test_wilson_of_nothing_is_undecided():
    iv = summ.wilson(0, 0)
    assert iv.fraction is None and iv.low is None and iv.of == 0


# --------------------------------------------------------------------------- journal, driver, resume


class FakeBackend:
    """Runs each task at once in process: `script(task, attempt)` gives its result."""

    def __init__(self, script, slots=2):
        self.script, self.slots, self.queue, self.tries = script, slots, [], {}

    def capacity(self):
        return self.slots

    def submit(self, task):
        n = self.tries[pair(task.point, task.seed)] = self.tries.get(pair(task.point, task.seed), 0) + 1
        self.queue.append((task, self.script(task, n)))

    def wait(self, seconds):
        out, self.queue = self.queue[:1], self.queue[1:]
        return out

    def cancel(self):
        lost = [t for t, _ in self.queue]
        self.queue = []
        return [], lost


def ok(task, n):
    return {"outcome": "ok", "rank": task.seed, "n_params": 10, "n_outputs": 4, "g_deficient": task.seed % 2 == 0,
            "seconds": 0.1}


def tasks(points, seeds):
    return [Task(preset="x", sets=(), point=p, seed=s) for p in points for s in seeds]


def test_driver_retries_a_crash_once_then_records_it_failed(tmp_path):
    def script(task, n):
        if task.seed == 0:
            return {"outcome": "retry", "error": f"the worker process died (try {n})"}
        if task.seed == 1 and n == 1:
            return {"outcome": "retry", "error": "timed out after 1 s"}
        if task.seed == 2:
            return {"outcome": "fail", "error": "train.lr = -1 is not allowed"}
        return ok(task, n)

    with Journal(tmp_path) as j:
        out = drive(tasks([{"a": 1}], [0, 1, 2, 3]), FakeBackend(script), j, threading.Event())
    rows = {r.seed: r for r in Journal(tmp_path).rows()}
    assert len(out.rows) == 4 and not out.cancelled
    assert (rows[0].status, rows[0].attempts, rows[0].error) == ("failed", 2, "the worker process died (try 2)")
    assert (rows[1].status, rows[1].attempts) == ("ok", 2)
    assert (rows[2].status, rows[2].attempts) == ("failed", 1)  # the preset's own fault: not retried
    assert (rows[3].status, rows[3].attempts, rows[3].rank) == ("ok", 1, 3)


def test_resume_runs_each_missing_pair_once_and_skips_a_cut_line(tmp_path):
    points, seeds = [{"w": [2]}, {"w": [4]}], [0, 1, 2]
    stop = threading.Event()
    seen = []

    def on_row(row):
        seen.append(row)
        if len(seen) == 2:
            stop.set()  # like a kill after two runs finished: the rest are in flight or not started

    with Journal(tmp_path) as j:
        out = drive(tasks(points, seeds), FakeBackend(ok, slots=3), j, stop, on_row)
    assert out.cancelled
    first = Journal(tmp_path).rows()
    assert sum(r.status == "ok" for r in first) == 2 and all(r.status in ("ok", "cancelled") for r in first)
    with open(tmp_path / "runs.jsonl", "ab") as fh:
        fh.write(b'{"point":{"w":[4]},"seed":2,"sta')  # a SIGKILL mid-write
    done = Journal(tmp_path).done()
    assert len(done) == 2
    todo = [t for t in tasks(points, seeds) if pair(t.point, t.seed) not in done]
    with Journal(tmp_path) as j:
        drive(todo, FakeBackend(ok), j, threading.Event())
    rows = Journal(tmp_path).rows()
    oks = [pair(r.point, r.seed) for r in rows if r.status == "ok"]
    assert sorted(oks) == sorted(pair(p, s) for p in points for s in seeds)  # every pair exactly once
    s = summ.summarise(rows, points, seeds, preset="x", sets=[], grid=parse_grid(["w=[[2],[4]]"]), backend="fake")
    assert s.complete and [p.runs for p in s.points] == [3, 3]
    assert s.points[0].g_deficient.count == 2 and s.points[0].g_deficient.of == 3  # seeds 0 and 2


def test_summary_files_are_written_and_read_back(tmp_path):
    rows = [RunRow(point={"w": 1}, seed=s, status="ok", attempts=1, rank=3, kernel_dim=7, generic_dim=6,
                   n_params=10, n_outputs=4, near_threshold=int(s == 1), g_deficient=s < 2, hessian_deficient=None)
            for s in range(4)]
    s = summ.summarise(rows, [{"w": 1}], [0, 1, 2, 3], preset="p", sets=[], grid=parse_grid(["w=[1]"]),
                       backend="fake")
    summ.write(s, tmp_path)
    back = decode_summary((tmp_path / "sweep.json").read_bytes())
    p = back.points[0]
    assert back.schema == "basintui.sweep/1" and back.complete
    assert (p.runs, p.g_deficient.count, p.g_deficient.of, p.hessian_deficient.of) == (4, 2, 4, 0)
    assert p.overparam_ratio == 2.5 and p.mean_excess_kernel == 1.0 and p.near_threshold_runs == 1
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("w,runs,") and lines[1].startswith("1,4,0,0,0,10,4,2.5,2,4,0.5,")


# --------------------------------------------------------------------------- the command line


def test_bad_grid_exits_2_listing_the_offending_points(tmp_path, capsys):
    code = cli.main(["sweep", "xor-relu", "--grid", "model.hidden=[[2],[-3],[4],[0]]", "--grid",
                     "train.stepz=[1]", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "train.stepz" in err and "nothing was started" in err
    assert err.count("model.hidden=[-3]") == 1 and err.count("model.hidden=[0]") == 1
    assert not (tmp_path / "o" / "runs.jsonl").exists()


@pytest.mark.parametrize("argv,words", [
    (["--grid", "model.hidden=3"], "TOML array"),
    (["--seeds", "0"], "--seeds 0"),
    (["--workers", "0"], "--workers 0"),
    (["--timeout", "-1"], "--timeout"),
    (["--seeds", "2", "--seed-list", "1,2"], "give one of them"),
])
def test_bad_flags_exit_2(tmp_path, capsys, argv, words):
    assert cli.main(["sweep", "xor-relu", *argv, "--out", str(tmp_path / "o")]) == 2
    assert words in capsys.readouterr().err


def test_an_existing_journal_needs_resume(tmp_path, capsys):
    (tmp_path / "runs.jsonl").write_text('{"point":{},"seed":0,"status":"ok","attempts":1}\n')
    assert cli.main(["sweep", "xor-relu", "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


# --------------------------------------------------------------------------- real runs, in process


class InlineBackend:
    """run_task in this process, one at a time."""

    def __init__(self):
        self.queue = []

    def capacity(self):
        return 1

    def submit(self, task):
        from basintui.sweep.task import run_task

        self.queue.append((task, run_task(task)))

    def wait(self, seconds):
        out, self.queue = self.queue, []
        return out

    def cancel(self):
        return [], []


def singh_rank(r, d, hidden):
    q = min([r, d, *hidden])
    return q * (r + d - q)


@pytest.mark.slow  # six dense-Hessian runs: seconds each on a loaded 2-core box
def test_deep_linear_sweep_every_rank_is_singh(tmp_path):
    """steps 0 and self targets (a zero-residual point): rank(G) = q(r + d − q) and the Weyl count equals it."""
    grid = parse_grid(["model.hidden=[[6, 5], [2, 8], [3]]"])
    sets = ("train.steps=0", "data.targets=\"self\"", "data.n=12")
    todo = [Task(preset="deep-linear", sets=sets, point=p, seed=s) for p in grid.points() for s in (0, 1)]
    with Journal(tmp_path) as j:
        drive(todo, InlineBackend(), j, threading.Event())
    rows = Journal(tmp_path).rows()
    assert len(rows) == 6
    for r in rows:
        want = singh_rank(4, 3, r.point["model.hidden"])
        assert r.status == "ok", r.error
        assert r.rank == want and r.weyl_outside_band == want and r.weyl_outside_band_exact
        assert r.full_rank == min(r.n_params, 36) and r.g_deficient == (want < r.full_rank)
        assert r.hessian_deficient == r.g_deficient and r.kernel_dim == r.n_params - want


def test_a_run_past_its_timeout_is_retried_then_failed(tmp_path):
    t = Task(preset="xor-relu", sets=("train.steps=100000", "train.target_loss=0.0"), point={}, seed=0,
             timeout=0.3)
    with Journal(tmp_path) as j:
        drive([t], InlineBackend(), j, threading.Event())
    (row,) = Journal(tmp_path).rows()
    assert (row.status, row.attempts, row.error) == ("failed", 2, "timed out after 0.3 s")


def test_resume_refuses_a_folder_of_another_sweep(tmp_path, capsys):
    from basintui.sweep.summary import summarise, write

    s = summarise([], [{}], [0], preset="deep-linear", sets=["train.steps=0"], grid=parse_grid([]), backend="x")
    write(s, tmp_path)
    (tmp_path / "runs.jsonl").write_text('{"point":{},"seed":0,"status":"ok","attempts":1}\n')
    assert cli.main(["sweep", "xor-relu", "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "deep-linear" in err and "same preset" in err


def test_an_unwritable_out_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["sweep", "xor-relu", "--out", str(tmp_path / "file" / "sub")]) == 2
    assert "--out" in capsys.readouterr().err


def test_the_plot_puts_each_fraction_at_its_row_and_ratio():
    from basintui.render.sweep import ProgressLine, plot, table

    def rows_for(w, deficient):
        return [RunRow(point={"w": w}, seed=s, status="ok", attempts=1, n_params=4 * w, n_outputs=4,
                       g_deficient=s < deficient, hessian_deficient=s < deficient) for s in range(10)]

    rows = rows_for(1, 10) + rows_for(4, 0)
    s = summ.summarise(rows, [{"w": 1}, {"w": 4}], list(range(10)), preset="p", sets=[],
                       grid=parse_grid(["w=[1, 4]"]), backend="fake")
    lines = plot(s, width=40).splitlines()
    top, bottom = lines[1], lines[11]  # fraction 1.0 and 0.0
    assert top.startswith(" 1.0 ┤GH") and bottom.startswith(" 0.0 ┤") and bottom.rstrip().endswith("GH")
    assert "w=1" in table(s) and "10/10 = 1.00 [0.72, 1.00]" in table(s) and "0/10 = 0.00 [0.00, 0.28]" in table(s)
    import io

    buf = io.StringIO()
    p = ProgressLine(4, buf, tty=False, every_s=0)
    p.update()
    p.update(failed=True)
    assert "sweep 2/4 runs, 1 failed" in buf.getvalue().splitlines()[-1]
