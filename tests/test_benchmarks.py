"""The benchmark machinery on a tiny run: JSON lines with the fields the table and the bars need;
the pairing of JAX windows with each PyTorch peer's; the compiled PyTorch steps against eager ones."""

import collections
import importlib.util
import json
import re

import jax
import pytest

from benchmarks import cases, run, timing, vae_breakdown

HAS_TORCH = importlib.util.find_spec("torch") is not None
ROW_FIELDS = ("jax", "jaxlib", "device_kind", "device_count", "batch_size", "params", "compile_s", "steps_per_s",
              "images_per_s", "flops_per_step", "flops_per_s", "peak_fraction")  # fmt: skip


@pytest.mark.slow
def test_tiny_run_writes_json_lines_and_a_table(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    tiny = ["--models", "vae", "--scaling-models", "vae", "--devices", "2", "--parallel", "jit", "--scaling-epochs", "2",
            "--windows", "2", "--window-seconds", "0.01", "--peak-size", "128", "--out", str(out)]  # fmt: skip
    rows = run.main(tiny + ["--peers", "eager,compile"])
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    peers = ["torch eager", "torch.compile"] if HAS_TORCH else [None]
    assert [(r["kind"], r.get("peer")) for r in rows] == [
        ("peak", None),
        *[(k, p) for k in ("train", "eval") for p in peers],
        ("scaling", None),
    ]
    peak, train, scaling = rows[0], rows[1], rows[-1]
    assert peak["flops_per_s"] > 0 and peak["precision"] == "fp32"
    for row in rows[1:-1]:
        assert all(field in row for field in ROW_FIELDS) and row["precision"] == "fp32"
        assert row["steps_per_s"] > 0 and len(row["window_steps_per_s"]) == 2
        assert ("ratio" in row) == HAS_TORCH
        if HAS_TORCH:
            pairs = [a / b for a, b in zip(row["window_steps_per_s"], row["torch_window_steps_per_s"])]
            assert row["window_ratios"] == pytest.approx(pairs) and min(pairs) <= row["ratio"] <= max(pairs)
            assert (row["torch_compile_s"] is None) == (row["peer"] == "torch eager")
            assert row["torch_graphs_in_windows"] == 0
    assert train["steps_per_dispatch"] == 64 and train["params"] == 652_824 and train["flops_per_step"] > 4e8
    if HAS_TORCH:
        compiled = rows[2]
        assert compiled["torch_compile_s"] > 0 and compiled["torch_graphs"] >= 2  # forward with backward, then Adam
    assert "error" not in scaling and scaling["devices"] == 2 and scaling["device_count"] == 2
    assert scaling["steps_per_s"] > 0 and scaling["speedup"] == 1.0
    printed = capsys.readouterr().out
    assert f"| vae | train | fp32 | {peers[-1] or '-'} | 128 | 652824 | 64 |" in printed
    assert ("Against the strongest peer" in printed) == HAS_TORCH


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
    reference = torch_models.build(config.model, cases.arch(config), 2, 1e-3, images, torch.device("cpu"), **cases.torch_options(config))
    reference.train()
    reference.evaluate()
    assert reference.params == cases.build(name, jax.random.key(0)).params


class FakeRunner:
    """A runner at a fixed rate that logs its timed windows into `log`."""

    def __init__(self, name: str, steps_per_s: float, log: list):
        self.name, self.steps_per_s, self.log = name, steps_per_s, log

    def window(self, n: int) -> float:
        self.log.append(self.name)
        return n / self.steps_per_s


def test_each_peer_window_is_paired_with_the_jax_window_right_before_it():
    log = []
    jax_runner = timing.Runner(FakeRunner("jax", 400.0, log).window)
    peers = [timing.Runner(FakeRunner(name, rate, log).window) for name, rate in (("eager", 100.0), ("compile", 200.0))]
    schedule = run.peer_schedule(jax_runner, peers)
    rates = timing.alternate(schedule, windows=3, seconds=0.01)
    assert log[-12:] == ["jax", "eager", "jax", "compile"] * 3  # the timed windows, after calibration and warm-up
    (jax_eager, eager), (jax_compile, compiled) = run.split_schedule(rates, 2)
    assert eager == [100.0] * 3 and compiled == [200.0] * 3 and jax_eager == jax_compile == [400.0] * 3
    assert run.pair_ratios(jax_eager, eager)["ratio"] == 4.0 and run.pair_ratios(jax_compile, compiled)["ratio"] == 2.0
    assert run.peer_schedule(jax_runner, []) == [jax_runner]


def _row(peer, ratio, kind="train", model="vae", precision="fp32"):
    return {"kind": kind, "model": model, "precision": precision, "peer": peer, "batch_size": 128, "params": 1, "steps_per_dispatch": 64,
            "compile_s": 1.0, "torch_compile_s": None if peer == "torch eager" else 20.0, "steps_per_s": 300.0, "images_per_s": 38400.0,
            "flops_per_s": 1e11, "peak_fraction": 0.7, "torch_steps_per_s": 300.0 / ratio, "ratio": ratio}  # fmt: skip


def test_every_row_names_its_peer_and_precision_and_the_strongest_peer_leads():
    rows = [{"kind": "peak", "precision": "fp32", "size": 8, "jax_flops_per_s": 2e11, "torch_flops_per_s": 1e11, "flops_per_s": 2e11},
            {"kind": "peak", "precision": "tf32", "size": 8, "jax_flops_per_s": 4e11, "torch_flops_per_s": 3e11, "flops_per_s": 4e11},
            _row("torch eager", 2.2), _row("torch.compile", 1.5), _row("torch.compile max-autotune", 1.8),
            _row("torch eager", 3.0, precision="tf32"), _row("torch.compile", 2.5, precision="tf32"),
            {**_row("torch.compile", 1.0, kind="eval"), "ratio": None, "error": "RuntimeError: no compiler"}]  # fmt: skip
    del rows[-1]["ratio"]
    leads = run.strongest(rows)
    assert [(s["precision"], s["strongest"]["peer"], s["eager"]["ratio"]) for s in leads] == [
        ("fp32", "torch.compile", 2.2),
        ("tf32", "torch.compile", 3.0),
    ]
    text = run.table(rows)
    assert "Matmul peak (float32 8^2, fp32): JAX 200.0 GFLOP/s, PyTorch 100.0" in text and "Matmul peak (float32 8^2, tf32)" in text
    assert "| vae | train | fp32 | torch.compile max-autotune | 128 |" in text
    assert "| vae | eval | fp32 | torch.compile | 128 | 1 | 64 | 1 | 20 | 300 |" in text and "error: RuntimeError: no compiler" in text
    assert "| vae | train | fp32 | torch.compile | 300 | 200 | 1.5 | 136.4 | 2.2 |" in text  # strongest peer first, eager beside it
    bars = run.bar_lines(rows)
    assert "- vae train (fp32, vs torch.compile): ratio 1.5 (bar 2): MISSED; peak_fraction 0.7 (bar 0.7): met" in bars
    assert "- vae train (tf32, vs torch eager): ratio 3 (bar 2): met; peak_fraction 0.7 (bar 0.7): met" in bars


def test_peers_and_precisions_by_platform_and_flags():
    assert run.default_peers("cpu") == ("torch eager", "torch.compile")
    assert run.default_peers("cuda") == ("torch eager", "torch.compile", "torch.compile max-autotune")
    assert run.default_precisions() == ("fp32",)  # the tests run on CPU
    _, settings = run.parse_settings(["--peers", "eager,max-autotune", "--precisions", "fp32,tf32"])
    assert settings.peers == ("eager", "max-autotune") and settings.precisions == ("fp32", "tf32")
    assert run.parse_settings([])[1].peers is None
    with pytest.raises(SystemExit):
        run.parse_settings(["--peers", "jit"])


def test_precision_flags_of_the_torch_side():
    torch = pytest.importorskip("torch")
    from benchmarks import torch_models

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch_models.set_precision("tf32")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        torch_models.set_precision("fp32")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ae-mlp", "dae-conv", "sr", "vae", "gan"])
def test_compiled_step_trains_as_the_eager_step(name):
    # torch.compile of each reference model's whole step (half a minute to two on 2 busy cores),
    # with Inductor drawing random numbers as eager PyTorch does: from the same seed, the same
    # eval output, then one train step with the same gradients and the same Adam update
    torch = pytest.importorskip("torch")
    from benchmarks import torch_models

    config = cases.config_of(name)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    runs = {}
    torch._dynamo.reset()  # the steps of earlier tests' models are versions of the same code
    for mode in (None, "default"):
        torch.manual_seed(0)
        case = torch_models.build(
            config.model, cases.arch(config), 8, 1e-3, images, torch.device("cpu"), mode, **cases.torch_options(config)
        )
        params = [p for m in case.modules for p in m.parameters()]
        initial = [p.detach().clone() for p in params]
        with torch._inductor.config.patch(fallback_random=True):
            output = case.evaluate()
            case.train()
        runs[mode] = output, [p.grad.clone() for p in params], [p.detach().clone() for p in params], initial
        case.train()  # the second call (Adam's state exists now) runs, and moves the parameters again
        assert all(torch.isfinite(p).all() for p in params) and any(not torch.equal(p, q) for p, q in zip(params, runs[mode][2]))
    (eager_out, eager_grads, eager_params, initial), (out, grads, updated, _) = runs[None], runs["default"]
    assert torch.isfinite(out).all() and out.shape == eager_out.shape
    torch.testing.assert_close(out, eager_out, rtol=1e-4, atol=1e-5)
    for grad, eager in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(grad, eager, rtol=0, atol=1e-4 * float(eager.abs().max()) + 1e-8)
    # Adam's first step moves each parameter with a nonzero gradient by about lr (1e-3) times the
    # gradient's sign, so the few gradients that are rounding noise (biases before a GroupNorm)
    # may move either way; a missing or wrong update would move every moved element differently
    # (at least 5% of them: the SR head starts at zero, so its body has no gradient yet)
    moved = torch.cat([(a - b).abs().flatten() for a, b in zip(eager_params, initial)]) > 1e-4
    differ = torch.cat([(a - b).abs().flatten() for a, b in zip(updated, eager_params)]) > 1e-5
    assert float(moved.float().mean()) > 0.05 and float(differ.float().mean()) < 1e-3


def test_the_vae_breakdowns_matmuls_alone_are_the_library_steps_matmuls():
    """The breakdown's 'matmuls alone' step lowers to the same matrix products, by operand and
    result shapes, as the library's VAE step: none dropped, none added."""
    case = cases.build("vae", jax.random.key(0))
    batch = {"image": jax.numpy.zeros((case.config.batch_size, *cases.DATA.image_shape), jax.numpy.uint8)}

    def products(c):
        text = jax.jit(c.train_step).lower(c.state, batch, jax.random.key(0)).as_text()
        return collections.Counter(re.findall(r"stablehlo.dot_general.*?: \((.*?)\) -> (tensor<[^>]*>)", text))

    library = products(case)
    assert sum(library.values()) == 11  # 4 forward, 4 weight gradients, 3 input gradients
    assert products(vae_breakdown.matmuls_alone(case)) == library
