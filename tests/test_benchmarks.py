"""The benchmark machinery on a tiny run: JSON lines with the fields the table and the bars need."""
import importlib.util
import json

import jax
import pytest

from benchmarks import cases, run

HAS_TORCH = importlib.util.find_spec("torch") is not None
ROW_FIELDS = ("jax", "jaxlib", "device_kind", "device_count", "batch_size", "params", "compile_s", "steps_per_s",
              "images_per_s", "flops_per_step", "flops_per_s", "peak_fraction")  # fmt: skip


@pytest.mark.slow
def test_tiny_run_writes_json_lines_and_a_table(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    tiny = ["--models", "vae", "--scaling-models", "vae", "--devices", "2", "--parallel", "jit", "--scaling-epochs", "2",
            "--windows", "2", "--window-seconds", "0.01", "--peak-size", "128", "--out", str(out)]  # fmt: skip
    rows = run.main(tiny)
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert [r["kind"] for r in rows] == ["peak", "train", "eval", "scaling"]
    peak, train, _, scaling = rows
    assert peak["flops_per_s"] > 0
    assert all(field in train for field in ROW_FIELDS)
    assert train["steps_per_dispatch"] == 64 and train["params"] == 652_824 and train["flops_per_step"] > 4e8
    assert train["steps_per_s"] > 0 and len(train["window_steps_per_s"]) == 2
    assert ("ratio" in train) == HAS_TORCH
    if HAS_TORCH:
        pairs = [a / b for a, b in zip(train["window_steps_per_s"], train["torch_window_steps_per_s"])]
        assert train["window_ratios"] == pytest.approx(pairs) and min(pairs) <= train["ratio"] <= max(pairs)
    assert "error" not in scaling and scaling["devices"] == 2 and scaling["device_count"] == 2
    assert scaling["steps_per_s"] > 0 and scaling["speedup"] == 1.0
    assert "| vae | train | 128 | 652824 | 64 |" in capsys.readouterr().out


def test_ratio_is_the_median_of_window_pairs():
    # a slow spell of the machine halves JAX's windows 2-3 and PyTorch's window 2: the pairs still
    # read 3 twice, where the ratio of the medians (150 / 100) would say 1.5
    out = run.pair_ratios([300.0, 150.0, 150.0], [100.0, 50.0, 100.0])
    assert out == {"ratio": 3.0, "window_ratios": [3.0, 3.0, 1.5]}
    assert run.pair_ratios([3.0, 1.0, 2.0], [1.0, 1.0, 1.0])["ratio"] == 2.0
    with pytest.raises(ValueError):
        run.pair_ratios([1.0, 2.0], [1.0])


@pytest.mark.parametrize("name", list(cases.SPECS))
def test_torch_models_have_the_parameter_counts_of_the_jax_models(name):
    torch = pytest.importorskip("torch")
    from benchmarks import torch_models

    config = cases.config_of(name)
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    reference = torch_models.build(config.model, config.arch, 2, 1e-3, images, torch.device("cpu"), **cases.torch_options(config))
    reference.train()
    reference.evaluate()
    assert reference.params == cases.build(name, jax.random.key(0)).params
