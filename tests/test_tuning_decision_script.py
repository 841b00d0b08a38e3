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


def test_draws_names_the_best_draw_and_confirm_judges_s_and_e_against_the_shipped_policy(tmp_path):
    mod = load_script("tuning_decision")
    tasks = [f"keel:t{i}" for i in range(8)]
    for i, t in enumerate(tasks):
        for seed in range(4):
            base = 0.7 + 0.01 * i + 0.003 * seed
            _write(tmp_path / "a", t, "policy:/x/runs/default/policy", seed, base)  # draw 0
            for g in range(1, 4):
                _write(tmp_path / "a", t, f"policy:/x/tuning-keel/v0-g{g}/policy", seed, base + (0.004 if g == 2 else 0))
            _write(tmp_path / "b", t, "margin", 10 + seed, base)
            _write(tmp_path / "b", t, "policy", 10 + seed, base)  # the shipped policy
            _write(tmp_path / "b", t, "policy:/x/tuning-keel/v0-g2/policy", 10 + seed, base + 0.002 + 0.0001 * i)
            _write(tmp_path / "b", t, "policy:/x/tuning-keel/ensemble-v0", 10 + seed, base - 0.001)
    text, best = mod.draws_table(str(tmp_path / "a"))
    assert best == 2 and "4 draws" in text and "S = g2" in text
    out = tmp_path / "draws.md"
    mod.main([str(tmp_path / "a"), "--draws", "--confirm", str(tmp_path / "b"), "--out", str(out)])
    rows = {line.split(" | ")[0]: line for line in out.read_text().splitlines() if line.startswith("| ")}
    assert rows["| S − shipped"].endswith("| 8/0 | 0.004 | yes |")
    assert rows["| E − shipped"].startswith("| E − shipped | -0.0010 | 0/8 |") and rows["| E − shipped"].endswith("| no |")


def test_powered_averages_four_draws_and_twenty_seeds_per_variant(tmp_path):
    mod = load_script("tuning_decision")
    for i in range(8):
        t = f"keel:t{i}"
        for seed in range(20):
            base = 0.7 + 0.01 * i + 0.0005 * seed
            _write(tmp_path, t, "margin", seed, base)
            _write(tmp_path, t, "random", seed, base - 0.02)
            _write(tmp_path, t, "policy:/x/runs/default/policy", seed, base)
            for g in range(1, 4):
                _write(tmp_path, t, f"policy:/x/tuning-keel/v0-g{g}/policy", seed, base)
            for g in range(4):  # M3 gains only in draw 3; X0 loses in every draw
                _write(tmp_path, t, f"policy:/x/tuning-keel/m3-g{g}/policy", seed, base + (0.004 + 0.0001 * i if g == 3 else 0))
                _write(tmp_path, t, f"policy:/x/tuning-keel/x0-g{g}/policy", seed, base - 0.002)
    text = mod.powered_table(str(tmp_path))
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert rows["| draws"] == "| draws | 1 | 1 | 4 | 4 | 4 |"
    assert rows["| M3 − V0"].startswith("| M3 − V0 | +0.0011 | 8/0 |") and rows["| M3 − V0"].endswith("| yes |")
    assert rows["| X0 − V0"].startswith("| X0 − V0 | -0.0020 | 0/8 |") and rows["| X0 − V0"].endswith("| no |")
