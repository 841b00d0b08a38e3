import json

import pytest
from _tiny import load_script


def _write(root, task, strategy, seed, aulc):
    d = root / "runs" / task.replace(":", "_")
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{strategy.replace('/', '_').replace(':', '_')}__seed{seed}.json").write_text(
        json.dumps({"task": task, "strategy": strategy, "seed": seed, "aulc": aulc}))


@pytest.mark.parametrize("gain,adopted", [(0.01, "yes"), (-0.01, "no")])
def test_rule_averages_draws_and_seeds_and_adopts_only_a_significant_gain(tmp_path, gain, adopted):
    mod = load_script("tuning_decision")
    tasks = [f"keel:t{i}" for i in range(8)]
    for i, t in enumerate(tasks):
        for seed in range(3):
            base = 0.7 + 0.01 * i + 0.001 * seed
            _write(tmp_path, t, "random", seed, base - 0.02)
            _write(tmp_path, t, "margin", seed, base)
            _write(tmp_path, t, "policy:/x/runs/default/policy", seed, base)        # V0, draw 0
            _write(tmp_path, t, "policy:/x/tuning-keel/v0-g1/policy", seed, base + 0.002)  # V0, draw 1
            # V1: one draw above V0, one below by more when gain < 0; the draws are averaged
            _write(tmp_path, t, "policy:/x/tuning-keel/v1-g0/policy", seed, base + 0.001 + gain)
            _write(tmp_path, t, "policy:/x/tuning-keel/v1-g1/policy", seed, base + 0.001 + gain)
    s = mod.scores(str(tmp_path))
    assert s["V0"]["keel:t0"] == pytest.approx(0.7 + 0.001 + 0.001)  # mean of seeds 0..2 and both draws
    out = tmp_path / "table.md"
    mod.main([str(tmp_path), "--out", str(out)])
    text = out.read_text()
    assert f"| V1 − V0 | {gain:+.4f} | " in text
    row = next(line for line in text.splitlines() if line.startswith("| V1 − V0 |"))
    assert row.endswith(f"| {adopted} |")
    assert "| V0 − random | +0.0210 | 8/0 |" in text
