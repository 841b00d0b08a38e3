"""scripts/kernel_noise.py: the same transfer-eval under torch's native and scalar CPU kernels, compared."""

from __future__ import annotations

import pytest
from _tiny import load_script


def test_both_kernel_sets_run_and_every_strategy_is_compared(tmp_path, capsys):
    noise = load_script("kernel_noise")
    rows = noise.main(["--tasks", "sklearn:iris", "--strategies", "random,margin", "--seeds", "2", "--budget", "12",
                       "--initial", "6", "--query-size", "6", "--epochs-steps", "5", "--out", str(tmp_path)])
    assert [r["strategy"] for r in rows] == ["random", "margin"] and all(r["runs"] == 2 for r in rows)
    for r in rows:
        assert abs(r["mean_difference"]) <= r["mean_abs_difference"] + 1e-12 and 0.0 <= r["changed"] <= 1.0
        assert 0.0 < r["native"] <= 1.0 and 0.0 < r["scalar"] <= 1.0
    assert (tmp_path / "native" / "summary.json").is_file() and (tmp_path / "scalar" / "summary.json").is_file()
    assert "ATEN_CPU_CAPABILITY=default" in capsys.readouterr().out


def test_compare_counts_changed_curves():
    noise = load_script("kernel_noise")

    def res(acc):
        return {"runs": [{"strategy": "margin", "task": "t", "seed": s, "aulc": sum(a) / len(a), "accuracy": a}
                         for s, a in enumerate(acc)]}

    rows = noise.compare(res([[0.5, 0.7], [0.5, 0.9]]), res([[0.5, 0.7], [0.5, 0.8]]))
    assert rows == [{"strategy": "margin", "runs": 2, "native": pytest.approx(0.65), "scalar": pytest.approx(0.625),
                     "mean_difference": pytest.approx(0.025), "mean_abs_difference": pytest.approx(0.025), "changed": 0.5}]
