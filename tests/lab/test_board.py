"""`vla board` on `vla eval` results from two checkpoints: the figures, the A/B table, and the
page opened in a real headless Chromium."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vla.cli import cli
from vla.lab.board import newcombe, success_at_k_interval


def test_intervals_of_success_at_k_and_of_a_difference():
    from vla.evaluation.metrics import wilson_interval

    assert success_at_k_interval(20, 10, 1) == pytest.approx(wilson_interval(20, 10))
    lo5, hi5 = success_at_k_interval(20, 10, 5)
    assert lo5 == pytest.approx(1 - (1 - wilson_interval(20, 10)[0]) ** 5) and hi5 <= 1
    d, lo, hi = newcombe(20, 18, 20, 9)
    assert d == pytest.approx(0.45) and 0 < lo < d < hi < 1  # clearly better
    d, lo, hi = newcombe(20, 11, 20, 9)
    assert lo < 0 < hi  # no clear change


def _build(tmp_path, recorded):
    evals = tmp_path / "evals"
    recorded["eval"](evals / "eval_old", "ckpt-1000", {"lift": [True] * 9 + [False] * 11, "push_left": [True] * 10 + [False] * 10},
                     1_800_000_000.0, video=True, incidents={"lift": 3}, rejected={"lift": 1})
    recorded["eval"](evals / "eval_new", "ckpt-2000", {"lift": [True] * 18 + [False] * 2, "push_left": [True] * 11 + [False] * 9},
                     1_800_086_400.0, video=True)
    (evals / "junk").mkdir()
    (evals / "junk" / "results.json").write_text("[]")
    out = tmp_path / "board"
    result = CliRunner().invoke(cli, ["board", str(evals), "--out", str(out), "--title", "weekly board"])
    assert result.exit_code == 0, result.output
    assert "2 evaluations, 2 tasks, 2 A/B rows" in result.output and "junk/results.json" in result.output
    return out


def test_board_figures_per_task_and_checkpoint(tmp_path, recorded):
    out = _build(tmp_path, recorded)
    data = json.loads((out / "board.json").read_text())
    old, new = data["tasks"]["lift"]
    assert (old["checkpoint"], new["checkpoint"]) == ("ckpt-1000", "ckpt-2000")  # oldest first
    assert old["success_at"]["1"] == pytest.approx(0.45) and new["success_at"]["1"] == pytest.approx(0.9)
    assert old["success_at_ci95"]["1"] == pytest.approx(list(success_at_k_interval(20, 9, 1)))
    assert old["time_to_success_s"] == pytest.approx(4.4)  # median of 4.0 .. 4.8 s
    # 3 knocked a cube off, one of them also had a safety stop: 3 of 20 episodes failed gently
    assert (old["knocked_off"], old["safety_stops"], old["holds"]) == (3, 1, 0)
    assert old["gentle_failure_rate"] == pytest.approx(3 / 20) and new["gentle_failure_rate"] == 0
    ab = {r["task"]: r for r in data["ab"]}
    assert ab["lift"]["checkpoint"] == "ckpt-2000" and ab["lift"]["previous"] == "ckpt-1000"
    assert ab["lift"]["verdict"] == "better" and ab["push_left"]["verdict"] == "no clear change"
    assert (out / "media" / "e001.gif").is_file() and (out / "media" / "e001.png").is_file()
    assert old["thumbnail"] == "media/e001.png" and new["video"] == "media/e002.gif"


def test_no_results_is_an_error_that_says_where_it_looked(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["board", str(tmp_path / "empty"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "no `vla eval` results" in result.output and "empty" in result.output


@pytest.mark.slow
def test_the_board_page_in_chromium(tmp_path, recorded):
    from vla.testing.browser import chromium_page

    out = _build(tmp_path, recorded)
    data = json.loads((out / "board.json").read_text())
    with chromium_page() as page:
        page.goto((out / "index.html").as_uri())
        assert page.title() == "weekly board"
        ab = page.locator("#ab tr[data-task='lift']")
        assert ab.locator("td[data-field='verdict']").inner_text() == "better"
        assert ab.locator("td[data-field='rate']").inner_text().startswith("90% (18/20")
        assert float(ab.locator("td[data-field='difference']").get_attribute("data-value")) == pytest.approx(0.45)
        for task, rows in data["tasks"].items():
            table = page.locator(f"table.task[data-task='{task}']")
            assert table.locator("tbody tr").count() == 2
            for row in rows:
                tr = table.locator(f"tr[data-evaluation='{row['evaluation']}']")
                assert tr.get_attribute("data-checkpoint") == row["checkpoint"]
                assert tr.locator("td[data-field='episodes']").inner_text() == str(row["episodes"])
                cell = tr.locator("td[data-field='success_at_1']")
                assert float(cell.get_attribute("data-value")) == pytest.approx(row["success_at"]["1"])
                lo, hi = row["success_at_ci95"]["1"]
                assert cell.inner_text() == f"{100 * row['success_at']['1']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}%)"
                assert tr.locator("td[data-field='success_at_5']").inner_text().endswith("%)")
                # the thumbnail loaded from the copied media
                assert tr.locator("img.thumb").evaluate("img => img.complete && img.naturalWidth") == 48
        gentle = page.locator("table.task[data-task='lift'] tr[data-evaluation='e001'] td[data-field='gentle_failure_rate']")
        assert gentle.inner_text() == "15% (1 safety stops, 3 knocked off, 0 with holds)"
        page.screenshot(path=str(tmp_path / "board.png"), full_page=True)
    assert (tmp_path / "board.png").stat().st_size > 10_000
