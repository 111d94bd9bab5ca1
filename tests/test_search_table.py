"""The recorded-table benchmark (bench/search_table.py): a table is read only when it is right,
the replay answers a search epoch by epoch through the real oracle and pruner code, counts the
epochs it spends, and fails on a strategy that never stops; the figures are exact on a tiny
table.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_table", ROOT / "bench" /
                                                  "search_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_table"] = module  # the replay's worker processes import it by name
    spec.loader.exec_module(module)
    return module


#: A tiny table: 4 points (a x b), 2 epochs, seeds 0 and 1; point (2, 20) is the best.
CURVES = {(1, 10): [0.50, 0.60], (1, 20): [0.55, 0.70], (2, 10): [0.40, 0.65],
          (2, 20): [0.45, 0.80]}


def write_table(path: Path, rows=None, meta=None, seeds=(0, 1)) -> Path:
    lines = [{"meta": meta or {"dataset": "tiny", "epochs": 2, "points": 4,
                               "sizes": {"train_size": 10, "val_size": 100, "test_size": 10}}}]
    if rows is None:
        rows = []
        for seed in seeds:
            for index, ((a, b), val) in enumerate(CURVES.items()):
                rows.append({"dataset": "tiny", "seed": seed, "index": index,
                             "point": {"a": a, "b": b}, "val": val,
                             "test": [v - 0.01 for v in val], "time_s": [1.0, 1.0]})
    path.write_text("".join(json.dumps(line) + "\n" for line in [*lines, *rows]))
    return path


def test_a_tiny_table_is_read_with_its_best_point(bench, tmp_path):
    table = bench.load_table(write_table(tmp_path / "t.jsonl"), "tiny")
    assert table.seeds == [0, 1] and table.epochs == 2 and table.grid_epochs == 8
    assert table.points[table.index({"a": 2, "b": 20})] == (2, 20)
    assert table.kept(0).max() == 0.80 and table.kept_test(0)[3] == pytest.approx(0.79)


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[0].update(val=[0.5]), "needs 2 validation"),
    (lambda rows: rows[0].update(val=[0.5, 1.5]), r"in \[0, 1\]"),
    (lambda rows: rows.append(dict(rows[0])), "recorded twice"),
    (lambda rows: rows[4].update(point={"a": 9, "b": 10}), "in another seed"),
    (lambda rows: rows[1].update(index=7), "not a point"),
])
def test_a_wrong_table_is_refused_with_one_line(bench, tmp_path, change, message):
    rows = [{"dataset": "tiny", "seed": seed, "index": index, "point": {"a": a, "b": b},
             "val": list(val), "test": list(val), "time_s": [1, 1]}
            for seed in (0, 1) for index, ((a, b), val) in enumerate(CURVES.items())]
    change(rows)
    path = write_table(tmp_path / "t.jsonl", rows)
    with pytest.raises(bench.TableError, match=message):
        bench.load_table(path, "tiny")


def test_an_incomplete_seed_is_left_out_and_no_seed_at_all_refused(bench, tmp_path, capsys):
    rows = [{"dataset": "tiny", "seed": 0, "index": i, "point": {"a": a, "b": b}, "val": v,
             "test": v, "time_s": [1, 1]} for i, ((a, b), v) in enumerate(CURVES.items())]
    path = write_table(tmp_path / "t.jsonl", rows[:3])
    with pytest.raises(bench.TableError, match="no tiny seed holds all 4 points"):
        bench.load_table(path, "tiny")
    assert bench.main(["replay", "--table", str(path), "--datasets", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no tiny seed" in err[0]
    assert bench.main(["replay", "--table", str(path), "--datasets", "mnist"]) == 2
    assert "holds no mnist table" in capsys.readouterr().err


def test_a_cut_short_last_line_is_dropped_and_repaired(bench, tmp_path):
    path = write_table(tmp_path / "t.jsonl")
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"dataset": "tiny", "se')
    assert len(bench.read_lines(path, repair=True)) == len(whole.splitlines())
    assert path.read_bytes() == whole


def test_the_figures_of_one_repeat_are_exact(bench, tmp_path):
    table = bench.load_table(write_table(tmp_path / "t.jsonl"), "tiny")
    replay = bench.Replay(table, seed=0, budget=8)
    for index in (0, 3):  # (1, 10) then the best, (2, 20)
        for epoch in range(2):
            replay.epoch(index, epoch)
    figures = bench.measure(table, 0, replay, tolerance=0.0, shares=(0.25, 0.5))
    regret = figures["regret"]
    assert list(regret[:2]) == [np.inf, np.inf]  # nothing trained to its end yet
    assert regret[2] == pytest.approx(0.20) and regret[3] == pytest.approx(0.20)
    assert list(regret[4:]) == [0.0] * 5 and figures["reach"] == 4 and figures["spent"] == 4
    assert figures["tests"] == {0.25: pytest.approx(0.59), 0.5: pytest.approx(0.79)}


def test_a_strategy_that_never_stops_fails(bench, tmp_path):
    table = bench.load_table(write_table(tmp_path / "t.jsonl"), "tiny")
    replay = bench.Replay(table, seed=0, budget=8, stall_limit=50)
    with pytest.raises(bench.StrategyError, match="never stops"):
        while not replay.exhausted:  # proposes forever, trains nothing
            replay.propose()
    with pytest.raises(bench.StrategyError, match="table holds 2 epochs"):
        bench.Replay(table, seed=0, budget=8).epoch(0, 2)  # more epochs than recorded


def test_an_oracle_that_idles_forever_fails_instead_of_hanging(bench, tmp_path):
    from vggsweep.search import internals

    class Idle:
        def create_trial(self, tuner_id):
            class Trial:
                status = internals.IDLE
            return Trial()

    table = bench.load_table(write_table(tmp_path / "t.jsonl"), "tiny")
    with pytest.raises(bench.StrategyError, match="never stops"):
        bench.drive_keras_tuner(Idle(), bench.Replay(table, 0, 8, stall_limit=20),
                                per_epoch=True)


@pytest.mark.parametrize("name", ["keras-tuner random", "keras-tuner grid", "optuna random",
                                  "optuna TPE + median"])
def test_peers_replay_the_whole_tiny_grid(bench, tmp_path, name):
    """A stock search on the tiny table trains within the budget, each epoch from the table,
    and finds the best point once it has trained them all."""
    table = bench.load_table(write_table(tmp_path / "t.jsonl"), "tiny")
    strategy = next(s for s in bench.strategies() if s.name == name)
    replay = bench.Replay(table, seed=1, budget=table.grid_epochs)
    strategy.run(replay, 1)
    assert 0 < replay.spent <= table.grid_epochs + table.epochs
    trained = [index for _, index in replay.finished]
    assert set(trained) <= set(range(4))
    figures = bench.measure(table, 1, replay, tolerance=0.0)
    # The replay stops once the best point (index 3) is trained: its regret is 0 from then on.
    assert trained[-1] == 3 and replay.found_best and replay.exhausted
    assert figures["regret"][-1] == 0.0 and figures["reach"] == replay.spent


def test_vggsweep_searches_replay_through_the_jobs_oracles(bench, tmp_path):
    """On a table of the grid64 study's space, vggsweep's default search (quasi-random + ASHA,
    built as a job builds it) starts from the reference, S3's own model, trains it to its end
    (the pruner never stops it), and prunes others; a table of another space is refused."""
    from vggsweep import config

    points = bench.grid_points(config.compose(["study=grid64", "data=digits"]))
    rng = np.random.default_rng(0)
    rows = [{"dataset": "grid", "seed": 0, "index": i, "point": p,
             "val": sorted(rng.uniform(0.5, 0.9, 3).round(4).tolist()),
             "test": [0.5, 0.5, 0.5], "time_s": [1, 1, 1]} for i, p in enumerate(points)]
    reference = bench.reference_point()
    rows[points.index(reference)]["val"] = [0.1, 0.1, 0.1]  # the worst point of all
    path = write_table(tmp_path / "grid.jsonl", rows,
                       {"dataset": "grid", "epochs": 3, "points": 64, "sizes": {}})
    table = bench.load_table(path, "grid")
    strategy = next(s for s in bench.strategies() if s.name == "vggsweep quasi_random + ASHA")
    replay = bench.Replay(table, seed=0, budget=table.grid_epochs)
    strategy.run(replay, 1)
    assert replay.finished[0] == (3, points.index(reference))  # first, and to its end
    assert len(replay.finished) < 64  # ASHA stopped some
    tiny = bench.load_table(write_table(tmp_path / "t.jsonl"), "tiny")
    with pytest.raises(bench.StrategyError, match="not a point of the table"):
        strategy.run(bench.Replay(tiny, 0, 8), 1)


def test_replay_prints_the_side_by_side_table(bench, tmp_path, capsys):
    path = write_table(tmp_path / "t.jsonl")
    assert bench.main(["replay", "--table", str(path), "--datasets", "tiny", "--repeats", "4",
                       "--jobs", "1", "--strategies", "optuna random", "keras-tuner grid",
                       "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "table seeds 0, 1 x tuner seeds 1-2 = 4 repeats" in out
    for name in ("optuna random", "optuna random + median", "keras-tuner grid"):
        assert f"\n{name} " in out
    assert (tmp_path / "p.png").stat().st_size > 0
