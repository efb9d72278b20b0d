"""`python -m benchmarks.run [--quick] [--out FILE]`: time jaxae's train and eval steps against PyTorch.

Rows, written as JSON lines to FILE as they finish, then printed as a table:

- peak: per precision, the float32 matmul rate of this machine (JAX and PyTorch, alternated; the
  larger counts).
- train / eval: per model, precision and PyTorch peer, the library's train step run K steps per
  dispatch through `jaxae.train.parallel.make_multi_step` (K and unrolling as `fit` gets them from
  `fit_options`), and its eval step jitted alone; each JAX window is followed by a window of the
  peer (eager PyTorch, `torch.compile`, on CUDA also `torch.compile` in "max-autotune" mode).
  Precisions: "fp32" (JAX at jax_default_matmul_precision "float32", PyTorch without TF32) and,
  on a GPU, "tf32" (JAX at "tensorfloat32", PyTorch with TF32 in cuBLAS and cuDNN).
- scaling: `fit` itself on 1, 2, 4 devices (forced CPU devices, one subprocess per count), with
  jit-with-sharding and, where `fit` has a `parallel` parameter, with `parallel="pmap"`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks import cases, timing
from benchmarks.timing import Runner, median
from jaxae.fast_random import use_unrolled_threefry_on_cpu
from jaxae.runs import fit_options
from jaxae.runs.common import environment
from jaxae.train.loop import fit
from jaxae.train.parallel import data_mesh, make_multi_step

ROOT = Path(__file__).resolve().parents[1]
INDEX_SETS = 4  # train dispatches cycle over this many random (K, B) index arrays
# precision -> jax_default_matmul_precision; PyTorch's side: benchmarks.torch_models.set_precision
JAX_PRECISION = {"fp32": "float32", "tf32": "tensorfloat32"}
PEER_NAMES = {"eager": "torch eager", "compile": "torch.compile", "max-autotune": "torch.compile max-autotune"}
COMPILE_CALLS = 3  # a compiled peer's first calls, timed as its compile time
# Bars on training ("train") and evaluation ("eval") rows: minimum JAX/PyTorch ratio and share of peak.
BARS = {
    ("vae", "train"): {"ratio": 2.0, "peak_fraction": 0.70},
    ("gan", "train"): {"ratio": 1.0},
    **{(name, phase): {"ratio": 1.0} for name in ("ae-conv", "ae-mlp", "dae-conv", "dae-mlp") for phase in ("train", "eval")},
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to run and how long: `windows` timed windows of about `window_seconds` each."""

    models: tuple[str, ...] = tuple(cases.SPECS)
    windows: int = 7
    window_seconds: float = 1.5
    peak_size: int | None = None  # None: 2048 on a CPU, 8192 on an accelerator
    devices: tuple[int, ...] = (1, 2, 4)
    scaling_models: tuple[str, ...] = ("vae", "ae-conv")
    scaling_epochs: int = 6  # per scaling run; the first one (it compiles) is not timed
    parallel: tuple[str, ...] = ("jit", "pmap")  # fit's parallel modes to scale
    torch: bool = True  # with the PyTorch reference, where torch is installed
    peers: tuple[str, ...] | None = None  # of PEER_NAMES; None: eager and compile, and max-autotune on CUDA
    precisions: tuple[str, ...] | None = None  # of JAX_PRECISION; None: fp32, and tf32 on a GPU


QUICK = Settings(windows=5, window_seconds=0.4, scaling_models=("vae",), scaling_epochs=4)


def synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """n random uint8 images (n, 28, 28, 1): the steps' cost does not depend on the pixels."""
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


def flops(compiled) -> float:
    """XLA's FLOP count of one call of a compiled function."""
    return float(compiled.cost_analysis().get("flops", float("nan")))


def jax_train(case: cases.JaxCase, images: np.ndarray) -> tuple[Runner, dict]:
    """The runner of the case's K-step dispatch on one device; info: compile_s, flops_per_step, K, unroll.

    FLOPs come from the single step compiled alone (XLA counts a scan's body once, not K times).
    """
    mesh = data_mesh(jax.devices()[:1])
    batch_size, k = case.config.batch_size, case.steps_per_dispatch
    data, state = jax.device_put(({"image": images}, case.state), NamedSharding(mesh, P()))
    rng = np.random.default_rng(1)
    index_sets = [rng.integers(0, images.shape[0], (k, batch_size), dtype=np.int32) for _ in range(INDEX_SETS)]
    key = jax.random.key(1)
    step_flops = flops(jax.jit(case.train_step).lower(state, {"image": data["image"][:batch_size]}, key).compile())
    compiled, compile_s = timing.timed(make_multi_step(case.train_step, mesh, case.unroll).lower(state, data, index_sets[0], key).compile)
    runner = Runner(timing.jax_train(compiled, state, data, index_sets, key), steps=k)
    return runner, {"compile_s": compile_s, "flops_per_step": step_flops, "steps_per_dispatch": k, "unroll": case.unroll}


def jax_eval(case: cases.JaxCase, images: np.ndarray) -> tuple[Runner, dict]:
    """The runner of the jitted eval step on one batch (a copy of the state: training donates it)."""
    state = jax.tree.map(jax.numpy.array, case.state)
    batch, key = jax.device_put({"image": images[: case.config.batch_size]}), jax.random.key(2)
    compiled, compile_s = timing.timed(jax.jit(case.eval_step).lower(state, batch, key).compile)
    return Runner(timing.jax_calls(compiled, state, batch, key)), {"compile_s": compile_s, "flops_per_step": flops(compiled)}


def jax_platform() -> str:
    return jax.devices()[0].platform


def default_precisions() -> tuple[str, ...]:
    """fp32 everywhere; on a GPU, where JAX's default float32 matmuls use TF32, tf32 too."""
    return ("fp32", "tf32") if jax_platform() == "gpu" else ("fp32",)


def jax_precision(precision: str):
    """The context in which JAX programs of a `precision` row are lowered (on a CPU, float32 dots
    run in float32 at either precision)."""
    return jax.default_matmul_precision(JAX_PRECISION[precision])


@dataclasses.dataclass
class Peer:
    """One PyTorch peer of a model: its case, and per phase its compile time (None when eager) or
    the error that stopped it; `graphs`: the graphs torch.compile made in its first calls."""

    name: str
    case: object = None
    compile_s: dict = dataclasses.field(default_factory=dict)
    graphs: int | None = None
    error: str | None = None


class TorchSide:
    """The PyTorch reference on the device matching JAX's ("cuda" for a GPU, else "cpu"), as the
    peers `peers` (keys of PEER_NAMES; None: eager and compile, and max-autotune on CUDA).

    Unless TORCHINDUCTOR_CACHE_DIR is set, torch.compile's caches (Inductor's, and Triton's
    inside it) start empty in a directory of this run, so that compile times are those of a first
    compilation, as JAX's (whose persistent cache is off) are.
    """

    def __init__(self, peers: tuple[str, ...] | None = None):
        self._cache = tempfile.TemporaryDirectory(prefix="jaxae-bench-torch-")
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", self._cache.name)
        import torch

        from benchmarks import torch_models

        self.torch, self.models = torch, torch_models
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        gpu = jax_platform() == "gpu" and torch.cuda.is_available()
        self.device = torch.device("cuda" if gpu else "cpu")
        self.peers = tuple(PEER_NAMES[p] for p in peers) if peers else default_peers(self.device.type)

    def synchronize(self) -> None:
        self.models.synchronize(self.device)

    def runner(self, fn) -> Runner:
        return Runner(timing.torch_calls(fn, self.synchronize))

    def set_precision(self, precision: str) -> None:
        """Sets PyTorch's CUDA float32 precision flags (on CPU it computes float32 regardless)."""
        if self.device.type == "cuda":
            self.models.set_precision(precision)

    def case(self, config, images: np.ndarray, peer: str = "torch eager"):
        """The same model as `config`'s, on uint8 NCHW copies of `images`, run as `peer`."""
        tensor = self.torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        options = cases.torch_options(config)
        mode = self.models.PEERS[peer]
        return self.models.build(
            config.model, cases.arch(config), config.batch_size, config.learning_rate, tensor, self.device, mode, **options
        )

    def peers_of(self, config, images: np.ndarray) -> list[Peer]:
        """`peer(config, images, name)` for each of self.peers, after forgetting the code compiled
        for earlier models: each model's step is a new closure of the same code, of which Dynamo
        keeps at most `recompile_limit` compiled versions before running it eagerly."""
        self.torch._dynamo.reset()
        return [self.peer(config, images, name) for name in self.peers]

    def peer(self, config, images: np.ndarray, name: str) -> Peer:
        """`case(config, images, name)`; for a compiled peer, each phase's first COMPILE_CALLS calls
        are timed as its compile time (tracing, compiling, and on CUDA recording CUDA graphs).
        An exception (say, no C++ compiler for Inductor) gives a Peer with its error instead."""
        peer = Peer(name)
        try:
            peer.case = self.case(config, images, name)
            if self.models.PEERS[name] is not None:
                before = self.compiled_graphs()
                for phase, fn in (("train", peer.case.train), ("eval", peer.case.evaluate)):
                    peer.compile_s[phase] = timing.first_calls(self.runner(fn), COMPILE_CALLS)
                peer.graphs = self.compiled_graphs() - before
        except Exception as error:  # noqa: BLE001 (the row records it and the run goes on)
            print(f"{name} failed on {config.model}: {error!r}", file=sys.stderr)
            lines = str(error).strip().splitlines()
            return Peer(name, error=f"{type(error).__name__}: {lines[0] if lines else ''}")
        return peer

    def compiled_graphs(self) -> int:
        """Graphs torch.compile has made in this process so far."""
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])

    def info(self) -> dict:
        return {"torch": self.torch.__version__, "torch_threads": self.torch.get_num_threads(), "torch_device": str(self.device)}


def default_peers(device_type: str) -> tuple[str, ...]:
    """Eager PyTorch and torch.compile; on CUDA also torch.compile's "max-autotune" (CUDA graphs)."""
    names = ("eager", "compile", "max-autotune") if device_type == "cuda" else ("eager", "compile")
    return tuple(PEER_NAMES[n] for n in names)


def rate_fields(rates: list[float], batch_size: int, prefix: str = "") -> dict:
    """Median steps/s and images/s over windows, and the windows themselves."""
    steps = median(rates)
    return {f"{prefix}steps_per_s": steps, f"{prefix}images_per_s": steps * batch_size, f"{prefix}window_steps_per_s": rates}


def pair_ratios(jax_rates: list[float], torch_rates: list[float]) -> dict:
    """JAX/PyTorch pair by pair: each JAX window over the PyTorch window that followed it
    (`window_ratios`), and their median (`ratio`), which a slower or faster spell of the machine
    moves less than the ratio of the two medians would."""
    ratios = [a / b for a, b in zip(jax_rates, torch_rates, strict=True)]
    return {"ratio": median(ratios), "window_ratios": ratios}


def peak_row(settings: Settings, torch_side: TorchSide | None, precision: str = "fp32") -> dict:
    """The matmul peak (FLOP/s) at `precision`: JAX's and PyTorch's rates, alternated; `flops_per_s` is the larger."""
    n = settings.peak_size or (2048 if jax_platform() == "cpu" else 8192)
    with jax_precision(precision):
        runners = [Runner(timing.jax_matmul(n))]
    if torch_side:
        torch_side.set_precision(precision)
        runners.append(torch_side.runner(torch_side.models.matmul(n, torch_side.device)))
    rates = timing.alternate(runners, settings.windows, settings.window_seconds)
    per_second = [2.0 * n**3 * median(r) for r in rates]
    row = {"kind": "peak", "precision": precision, "size": n, "jax_flops_per_s": per_second[0], "flops_per_s": max(per_second)}
    if torch_side:
        row["torch_flops_per_s"] = per_second[1]
    return row


def peer_schedule(jax_runner: Runner, peer_runners: list[Runner]) -> list[Runner]:
    """The order of one round of windows: JAX before each peer (JAX, peer 1, JAX, peer 2, ...),
    so that every peer window has a JAX window right before it to be paired with."""
    return [r for peer in peer_runners for r in (jax_runner, peer)] or [jax_runner]


def split_schedule(rates: list[list[float]], peers: int) -> list[tuple[list[float], list[float]]]:
    """`timing.alternate`'s rates over `peer_schedule` -> per peer (JAX's windows, the peer's)."""
    return [(rates[2 * i], rates[2 * i + 1]) for i in range(peers)]


def jax_fields(base: dict, rates: list[float], peak: float) -> dict:
    row = {**base, **rate_fields(rates, base["batch_size"])}
    row.update(flops_per_s=row["flops_per_step"] * row["steps_per_s"])
    return {**row, "peak_fraction": row["flops_per_s"] / peak}


def model_rows(name: str, settings: Settings, torch_side: TorchSide | None, peak: float, precision: str = "fp32") -> list[dict]:
    """The train rows and the eval rows of model `name` at `precision`, one per PyTorch peer (one
    without a peer where there is no torch), each from JAX windows paired with the peer's."""
    case = cases.build(name, jax.random.key(0))
    images = synthetic_images(cases.TRAIN_IMAGES)
    batch_size, params = case.config.batch_size, case.params
    with jax_precision(precision):
        jax_runners = {"eval": jax_eval(case, images)}  # first: it copies the state that training donates
        jax_runners["train"] = jax_train(case, images)
    peers = []
    if torch_side:
        torch_side.set_precision(precision)
        peers = torch_side.peers_of(case.config, images)
    running = [p for p in peers if p.error is None]
    rows = []
    for phase in ("train", "eval"):
        runner, info = jax_runners[phase]
        base = {"kind": phase, "model": name, "precision": precision, "batch_size": batch_size, "params": params, "devices": 1, **info}
        fns = [p.case.train if phase == "train" else p.case.evaluate for p in running]
        graphs = torch_side.compiled_graphs() if torch_side else 0
        rates = timing.alternate(peer_schedule(runner, [torch_side.runner(f) for f in fns]), settings.windows, settings.window_seconds)
        late_graphs = torch_side.compiled_graphs() - graphs if torch_side else 0
        if not running:
            rows.append(jax_fields({**base, "peer": None}, rates[0], peak))
        for peer, (jax_rates, peer_rates) in zip(running, split_schedule(rates, len(running))):
            row = jax_fields({**base, "peer": peer.name}, jax_rates, peak)
            row.update(rate_fields(peer_rates, batch_size, "torch_"), torch_params=peer.case.params)
            row.update(torch_compile_s=peer.compile_s.get(phase), torch_graphs=peer.graphs, torch_graphs_in_windows=late_graphs)
            rows.append({**row, **pair_ratios(jax_rates, peer_rates)})
        rows += [{**base, "peer": p.name, "error": p.error} for p in peers if p.error is not None]
    return rows


def scaling_worker(job: dict) -> dict:
    """One scaling row: `fit` on the first job["devices"] devices, epochs of job["dispatches"] dispatches.

    Each epoch after the first is a window, timed from one `on_log` call to the next (so it
    includes fit's own per-epoch work: the permutation, fetching the metrics, its checks).
    """
    case = cases.build(job["model"], jax.random.key(0))
    batch_size, k = case.config.batch_size, case.steps_per_dispatch
    stamps: list[float] = []
    options = {} if job["parallel"] == "jit" else {"parallel": job["parallel"]}
    result = fit(
        case.state,
        case.train_step,
        {"image": synthetic_images(batch_size * k * job["dispatches"])},
        key=jax.random.key(1),
        epochs=job["epochs"],
        batch_size=batch_size,
        steps_per_dispatch=k,
        progress=False,
        mesh=data_mesh(jax.devices()[: job["devices"]]),
        unroll=case.unroll,
        on_log=lambda state, record: stamps.append(time.perf_counter()),
        **options,
    )
    rates = [k * job["dispatches"] / s for s in np.diff(stamps)]
    head = {"kind": "scaling", **job, "batch_size": batch_size, "params": case.params, "steps_per_dispatch": k, "unroll": case.unroll}
    return {**head, "compile_s": result.compile_seconds, **rate_fields(rates, batch_size)}


def run_worker(job: dict) -> dict:
    """`scaling_worker(job)` in a fresh process; on a CPU with job["devices"] forced host devices.

    A failed run gives a row with its error (the last line of its stderr) instead of numbers.
    """
    env = dict(os.environ)
    if jax.devices()[0].platform == "cpu":
        flag = f"--xla_force_host_platform_device_count={job['devices']}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    command = [sys.executable, "-m", "benchmarks.run", "--worker", json.dumps(job)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        return {"kind": "scaling", **job, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling_rows(settings: Settings, train_rows: dict[str, dict], peak: float) -> list[dict]:
    """Scaling rows over settings.devices (on an accelerator: those it has), jit and, if fit has it, pmap.

    Epochs last about settings.window_seconds at the single-device rate of `train_rows`, whose
    FLOPs per step also give the rows' FLOP/s. `speedup` is steps/s relative to the one-device
    row of the same parallel mode.
    """
    counts = settings.devices if jax.devices()[0].platform == "cpu" else [n for n in settings.devices if n <= jax.device_count()]
    rows = []
    for name in settings.scaling_models:
        single = train_rows.get(name)
        k = fit_options(cases.config_of(name))["steps_per_dispatch"]
        dispatches = max(1, round(settings.window_seconds * single["steps_per_s"] / k)) if single else 2
        for mode in settings.parallel:
            base = None
            for n in counts:
                job = {"model": name, "parallel": mode, "devices": n, "dispatches": dispatches, "epochs": settings.scaling_epochs}
                row = run_worker(job)
                base = base or row.get("steps_per_s")
                if base and "steps_per_s" in row:
                    row["speedup"] = row["steps_per_s"] / base
                if single and "steps_per_s" in row:
                    row["flops_per_s"] = single["flops_per_step"] * row["steps_per_s"]
                    row["peak_fraction"] = row["flops_per_s"] / peak
                rows.append(row)
    return rows


def run_all(settings: Settings, write) -> list[dict]:
    """Every row, each passed to `write(row)` as soon as it is measured. Scaling rows' % peak is
    against the largest peak measured, their FLOPs per step from the model's first train row."""
    torch_side = None
    if settings.torch and importlib.util.find_spec("torch") is None:
        print("torch is not installed (pip install -e '.[bench]'): JAX rows only", file=sys.stderr)
    elif settings.torch:
        torch_side = TorchSide(settings.peers)
    precisions = settings.precisions or default_precisions()
    common = {**environment(), **(torch_side.info() if torch_side else {})}
    rows = []

    def emit(row: dict) -> dict:
        rows.append({**row, **common} if row["kind"] != "scaling" else row)
        write(rows[-1])
        return row

    peaks = {p: emit(peak_row(settings, torch_side, p))["flops_per_s"] for p in precisions}
    train_rows = {}
    for name in settings.models:
        for precision in precisions:
            for row in model_rows(name, settings, torch_side, peaks[precision], precision):
                emit(row)
                if row["kind"] == "train" and "steps_per_s" in row:
                    train_rows.setdefault(name, row)
    for row in scaling_rows(settings, train_rows, max(peaks.values())):
        emit(row)
    return rows


def _number(value) -> str:
    """A table cell: floats to 4 significant digits, None as "-"."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _markdown(header: list[str], lines: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(map(_number, line)) + " |" for line in lines]


def vs(row: dict) -> str:
    """Which comparison a row is: its precision and its peer."""
    return f"{row['precision']}, vs {row.get('peer') or 'no peer'}"


def bar_lines(rows: list[dict]) -> list[str]:
    """One line per row with a bar: each requirement, the measured value, met or missed."""
    out = []
    for row in rows:
        bars = BARS.get((row.get("model"), row["kind"]), {})
        checks = [
            f"{key} {row[key]:.3g} (bar {bar:.3g}): {'met' if row[key] >= bar else 'MISSED'}" for key, bar in bars.items() if key in row
        ]
        if checks:
            out.append(f"- {row['model']} {row['kind']} ({vs(row)}): " + "; ".join(checks))
    return out


def strongest(rows: list[dict]) -> list[dict]:
    """Per model, phase and precision: the measured peer JAX compares worst against (the lowest
    paired ratio) as "strongest", and the eager peer's row as "eager" (None where not run)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] in ("train", "eval") and "ratio" in r:
            groups.setdefault((r["model"], r["kind"], r["precision"]), []).append(r)
    return [
        {"model": m, "phase": k, "precision": p, "strongest": min(g, key=lambda r: r["ratio"]),
         "eager": next((r for r in g if r["peer"] == PEER_NAMES["eager"]), None)}
        for (m, k, p), g in groups.items()
    ]  # fmt: skip


def strongest_lines(rows: list[dict]) -> list[str]:
    """The markdown table of `strongest(rows)`: JAX against its strongest peer, then against eager."""
    header = [
        "model",
        "phase",
        "precision",
        "strongest peer",
        "JAX steps/s",
        "peer steps/s",
        "JAX/peer",
        "torch eager steps/s",
        "JAX/eager",
    ]
    lines = []
    for s in strongest(rows):
        top, eager = s["strongest"], s["eager"] or {}
        lines.append([s["model"], s["phase"], s["precision"], top["peer"], top["steps_per_s"], top["torch_steps_per_s"], top["ratio"],
                      eager.get("torch_steps_per_s"), eager.get("ratio")])  # fmt: skip
    return _markdown(header, lines) if lines else []


def table(rows: list[dict]) -> str:
    """The rows as markdown: the peaks, one line per train/eval row (one per peer and precision),
    JAX against the strongest peer, scaling, then the bars."""
    peaks = [r for r in rows if r["kind"] == "peak"]
    env = {
        k: peaks[0].get(k) for k in ("jax", "jaxlib", "device_kind", "device_count", "platform", "torch", "torch_threads", "torch_device")
    }
    text = ["Environment: " + ", ".join(f"{k} {v}" for k, v in env.items() if v is not None), ""]
    for peak in peaks:
        text.append(
            f"Matmul peak (float32 {peak['size']}^2, {peak['precision']}): JAX {peak['jax_flops_per_s'] / 1e9:.1f} GFLOP/s"
            + (f", PyTorch {peak['torch_flops_per_s'] / 1e9:.1f} GFLOP/s" if "torch_flops_per_s" in peak else "")
        )
    text.append("")
    header = ["model", "phase", "precision", "peer", "batch", "params", "K", "JAX compile s", "peer compile s",
              "JAX steps/s", "JAX images/s", "GFLOP/s", "% peak", "peer steps/s", "JAX/peer"]  # fmt: skip
    lines = [
        [r["model"], r["kind"], r["precision"], r.get("peer") or "-", r["batch_size"], r["params"], r.get("steps_per_dispatch", 1),
         r["compile_s"], r.get("torch_compile_s"), r.get("steps_per_s"), r.get("images_per_s"),
         r["flops_per_s"] / 1e9 if "flops_per_s" in r else None, 100 * r["peak_fraction"] if "peak_fraction" in r else None,
         r.get("torch_steps_per_s"), r.get("ratio") if "error" not in r else "error: " + r["error"]]
        for r in rows if r["kind"] in ("train", "eval")
    ]  # fmt: skip
    text += _markdown(header, lines)
    against = strongest_lines(rows)
    if against:
        text += ["", "Against the strongest peer (the lowest JAX/peer of each model, phase and precision) and against eager PyTorch:", "",
                 *against]  # fmt: skip
    scaling = [r for r in rows if r["kind"] == "scaling"]
    if scaling:
        header = ["model", "parallel", "devices", "batch", "compile s", "steps/s", "images/s", "% peak", "speedup"]
        lines = [
            [r["model"], r["parallel"], r["devices"], r.get("batch_size"), r.get("compile_s"), r.get("steps_per_s"), r.get("images_per_s"),
             100 * r["peak_fraction"] if "peak_fraction" in r else None, r.get("speedup") if "error" not in r else "error: " + r["error"]]
            for r in scaling
        ]  # fmt: skip
        text += ["", *_markdown(header, lines)]
    bars = bar_lines(rows)
    return "\n".join(text + (["", "Bars:", *bars] if bars else []))


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def _choices(allowed: dict) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of names, each one of `allowed`."""

    def parse(text: str) -> tuple[str, ...]:
        names = _names(text)
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return names

    return parse


def parse_settings(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer scaling runs: a few minutes on 2 CPU cores")
    parser.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results.jsonl"),
        help="JSON lines file (overwritten); the table goes to FILE with suffix .md",
    )
    parser.add_argument("--models", type=_names, help=f"comma-separated, of {','.join(cases.SPECS)}")
    parser.add_argument("--scaling-models", type=_names, help="comma-separated; empty: no scaling rows")
    parser.add_argument("--devices", type=lambda s: tuple(int(n) for n in _names(s)), help="device counts of the scaling rows, e.g. 1,2,4")
    parser.add_argument("--windows", type=int, help="timed windows per measurement (their median is reported)")
    parser.add_argument("--window-seconds", type=float, help="length of one window")
    parser.add_argument("--peak-size", type=int, help="side of the square matmul that measures the peak")
    parser.add_argument("--scaling-epochs", type=int, help="epochs per scaling run (the first is not timed)")
    parser.add_argument("--parallel", type=_names, help="fit's parallel modes of the scaling rows: jit,pmap")
    parser.add_argument("--no-torch", dest="torch", action="store_false", default=None, help="skip the PyTorch reference")
    parser.add_argument(
        "--peers",
        type=_choices(PEER_NAMES),
        help=f"PyTorch peers, of {','.join(PEER_NAMES)} (default: eager,compile; on CUDA also max-autotune)",
    )
    parser.add_argument(
        "--precisions", type=_choices(JAX_PRECISION), help="matmul precisions, of fp32,tf32 (default: fp32; on a GPU fp32,tf32)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(Settings)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return args, dataclasses.replace(QUICK if args.quick else Settings(), **overrides)


def main(argv: list[str] | None = None) -> list[dict]:
    use_unrolled_threefry_on_cpu()  # as the jaxae command does
    args, settings = parse_settings(argv)
    if args.worker:
        print(json.dumps({**scaling_worker(json.loads(args.worker)), **environment()}))
        return []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as file:

        def write(row: dict) -> None:
            file.write(json.dumps(row) + "\n")
            file.flush()
            print(f"[{row['kind']}] {row.get('model', '')} done", file=sys.stderr, flush=True)

        rows = run_all(settings, write)
    text = table(rows)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()
