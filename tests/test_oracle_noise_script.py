"""scripts/oracle_noise.py: one retrain against the mean of R, on a tiny source."""

from __future__ import annotations

from _tiny import load_script


def test_oracle_noise_counts_every_state_and_compares_the_spreads():
    noise = load_script("oracle_noise")
    out = noise.oracle_noise(["sklearn:iris"], seeds=1, rounds=2, repeats=2, initials=(10,), train_steps=5)
    assert out["states"] == 2 and set(out["same_winner_by_round"]) == {1, 2}
    assert 0.0 <= out["same_winner"] <= 1.0
    assert out["sd_across_retrains"] >= 0.0 and out["sd_across_batches"] > 0.0
