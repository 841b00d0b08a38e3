"""scripts/bench_eval.py on a tiny setting: both parts run, the rows carry rates and the agreement checks."""

import json

from _tiny import load_script


def test_bench_eval_quick_runs_and_checks_agreement(tmp_path, capsys):
    bench = load_script("bench_eval")
    out = tmp_path / "bench.json"
    rows = bench.main(["--quick", "--models", "mlp", "--tasks", "mlp=sklearn:iris", "--strategies", "random,margin",
                       "--seeds", "2", "--budget", "12", "--initial", "6", "--query-size", "6", "--steps", "5",
                       "--oracle-rounds", "1", "--threads", "1", "--out", str(out)])
    oracle, evaluation = rows
    assert oracle["part"] == "batch oracle" and oracle["M"] >= 5  # one copy per proposer batch
    assert oracle["max_abs_loss_gain_diff"] < 1e-5 and oracle["winner_changed"] == 0
    assert evaluation["part"] == "evaluation" and evaluation["M"] == 4 and evaluation["runs_compared"] == 4
    assert evaluation["max_abs_aulc_move"] <= 0.05
    for row in rows:
        assert row["ref_rounds_per_s"] > 0 and row["stack_rounds_per_s"] > 0 and 0 < row["peak_share"] < 1
    saved = json.loads(out.read_text())
    assert saved["gemm_peak_gflops"] > 0 and len(saved["rows"]) == 2
    printed = capsys.readouterr().out
    assert "GEMM peak" in printed and "rounds/s" in printed and "curves differ" in printed
