import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vitkit import from_pretrained
from vitkit.inference import evaluate_on, load_model
from vitkit.train import NonFiniteLossError, train

# A tiny model and a short schedule on the built-in digits: real data, seconds per run; fp32, because the
# equivalence tests compare runs whose float summation orders differ (bf16 would round those differences up).
FAST = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "schedule.epochs=2", "schedule.warmup_epochs=1",
        "logging.progress=false", "logging.log_every_steps=1", "data.num_workers=0", "deterministic=true",
        "precision=fp32"]


@pytest.fixture
def fast_overrides(tmp_path):
    return FAST + [f"output_dir={tmp_path}", "name=run"]


def run_cli(args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vitkit", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def finish(process, timeout=300):
    """Waits for a CLI run, echoing its output so a failure explains itself."""
    output, _ = process.communicate(timeout=timeout)
    print(output)
    return process.returncode


def metrics(run_dir, kind):
    """The run's metrics.jsonl records of one kind ('step' or 'epoch')."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == kind]


def final_weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / "last" / "model.safetensors"))


def test_a_run_leaves_everything_a_person_needs(tmp_path, fast_overrides):
    result = train(overrides=fast_overrides + ["ema.decay=0.9", "best_metric=ema_val_top1"])
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "train.log", "curves.png", "summary.json"):
        assert (run / name).is_file(), name
    records = metrics(run, "epoch")
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"ema_val_top1", "val_top1", "val_top5", "train_loss"} <= set(records[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_top1"] == pytest.approx(records[-1]["val_top1"])
    # last and best are vitkit checkpoints that rebuild the exact model with no other argument
    reloaded = from_pretrained(run / "checkpoints" / "last")
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(reloaded.eval()(x), result.model.eval()(x))
    assert reloaded.preprocess.mean == result.model.preprocess.mean
    # best holds the EMA weights of the best epoch: evaluated afresh, they score what the run recorded
    best = load_model(run)
    assert evaluate_on(best, "digits")["top1"] == pytest.approx(summary["best"], abs=1e-6)


def test_resume_after_sigkill_ends_with_identical_weights(tmp_path):
    common = FAST + ["model.drop_path_rate=0.1", "data.augment.mixup_alpha=0.2", "data.augment.cutmix_alpha=0.5",
                     "schedule.epochs=3"]
    reference = tmp_path / "reference"
    assert finish(run_cli(["train", *common, f"output_dir={tmp_path}", "name=reference"])) == 0

    killed = tmp_path / "killed"
    process = run_cli(["train", *common, f"output_dir={tmp_path}", "name=killed", "checkpoint_every_steps=3"])
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "last").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # kill somewhere after the first checkpoint, whatever it is doing
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert (killed / "checkpoints" / "last").exists()
    assert finish(run_cli(["train", "--resume", str(killed)])) == 0

    expected, resumed = final_weights(reference), final_weights(killed)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    epochs = [json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert epochs == [1, 2, 3]


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    process = run_cli(["train", *FAST, "schedule.epochs=50", f"output_dir={tmp_path}", "name=run"])
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "run" / "metrics.jsonl").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "stopped by SIGTERM" in output and "--resume" in output
    state = torch.load(tmp_path / "run" / "checkpoints" / "last" / "train_state.pt", weights_only=True)
    assert state["progress"]["step"] > 0


def test_tensorboard_receives_the_metrics_the_run_records(tmp_path, fast_overrides):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    train(overrides=fast_overrides + ["logging.tensorboard=true"])
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    epochs = metrics(tmp_path / "run", "epoch")
    logged = events.Scalars("epoch/val_top1")
    assert [e.step for e in logged] == [r["step"] for r in epochs]
    assert [e.value for e in logged] == pytest.approx([r["val_top1"] for r in epochs])
    steps = metrics(tmp_path / "run", "step")
    assert [e.value for e in events.Scalars("step/loss")] == pytest.approx([r["loss"] for r in steps])


def test_eval_every_epochs_scores_those_epochs_and_always_the_last(tmp_path, fast_overrides):
    result = train(overrides=fast_overrides + ["schedule.epochs=3", "eval_every_epochs=2"])
    records = metrics(tmp_path / "run", "epoch")
    assert ["val_top1" in r for r in records] == [False, True, True]
    assert result.summary["best_epoch"] in (2, 3) and (tmp_path / "run" / "curves.png").is_file()
    assert evaluate_on(result.model, "digits")["top1"] == pytest.approx(records[-1]["val_top1"], abs=1e-6)


def test_patch_drop_stages_set_the_kept_patches_step_by_step(fast_overrides, monkeypatch):
    from vitkit.layers.patch_dropout import PatchDropout

    lengths, forward = [], PatchDropout.forward

    def recording_forward(self, x, rope=None, bias=None):
        out = forward(self, x, rope, bias)
        if torch.is_grad_enabled():  # training steps only, not the evaluations
            lengths.append(out[0].shape[1])
        return out

    monkeypatch.setattr(PatchDropout, "forward", recording_forward)
    stages = "schedule.patch_drop_stages=[[0.5, 0.75], [1.5, 0]]"
    train(overrides=fast_overrides + ["model.patch_drop_rate=0.5", stages])
    steps_per_epoch = len(lengths) // 2
    half, one_and_half = round(0.5 * steps_per_epoch), round(1.5 * steps_per_epoch)
    # 8x8 digits in 2x2 patches: a class token and 16 patches, of which dropping 0.5 keeps 8 and 0.75 keeps 4
    assert lengths == [9] * half + [5] * (one_and_half - half) + [17] * (len(lengths) - one_and_half)


def test_compiled_run_with_patch_drop_stages_matches_eager(tmp_path, monkeypatch):
    """The token count changes mid-run (a recompile); the compiled run still ends where the eager one does."""
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)  # eager's random patches, not inductor's
    plain = FAST + ["schedule.epochs=1", f"output_dir={tmp_path}", "model.patch_drop_rate=0.5",
                    "schedule.patch_drop_stages=[[0.5, 0]]"]
    eager = train(overrides=plain + ["name=eager"]).model
    compiled = train(overrides=plain + ["name=compiled", "compile=true"]).model
    images = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled.eval()(images), eager.eval()(images), rtol=1e-3, atol=1e-4)


class Crash(Exception):
    """A process dying mid-step, as far as the run's files can tell."""


class StepClock:
    """A clock that advances `dt` seconds per optimizer step and never otherwise, so a time-budgeted run is exact;
    `crash_at` makes that step raise Crash."""

    def __init__(self, monkeypatch, dt, crash_at=None):
        import types

        import vitkit.train.trainer as trainer

        self.steps, self.dt, self.crash_at, step = 0, dt, crash_at, trainer.optimizer_step

        def counted_step(*args):
            step(*args)
            self.steps += 1
            if self.steps == self.crash_at:
                raise Crash(f"step {self.steps}")

        monkeypatch.setattr(trainer, "optimizer_step", counted_step)
        monkeypatch.setattr(trainer, "time", types.SimpleNamespace(**{**vars(time), "monotonic": self.now}))

    def now(self):
        return self.steps * self.dt


def expected_lr(fraction, base=2e-3, warmup_lr=1e-6, min_lr=1e-5, warmup=0.5):
    """Linear warmup over the first `warmup` of the budget, cosine to min_lr over the rest."""
    if fraction < warmup:
        return warmup_lr + (base - warmup_lr) * fraction / warmup
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * (fraction - warmup) / (1 - warmup)))


def test_a_time_budget_stretches_the_schedule_over_the_clock(tmp_path, fast_overrides, monkeypatch):
    StepClock(monkeypatch, dt=0.05)  # 60 steps in the 3-second budget; the digits recipe has 2 x 22 steps
    result = train(overrides=fast_overrides + ["schedule.time_budget_minutes=0.05", "optim.lr=2e-3"])
    run = tmp_path / "run"
    steps, epochs = metrics(run, "step"), metrics(run, "epoch")
    assert result.summary["steps"] == len(steps) == 60 and result.summary["train_seconds"] == pytest.approx(3.0)
    # each step's lr is the recipe's schedule at the share of the budget used when the step began
    assert [r["lr"] for r in steps] == pytest.approx([expected_lr(i / 60) for i in range(60)], rel=1e-6)
    # more passes over the data than the recipe's 2 epochs; evaluated where the schedule crosses an epoch, and last
    assert len(epochs) == result.summary["epochs"] > 2 and "val_top1" in epochs[-1]
    starts = [0] + [r["step"] for r in epochs[:-1]]
    crossed = [math.floor(r["step"] / 30) > math.floor(start / 30) for start, r in zip(starts, epochs)]
    assert ["val_top1" in r for r in epochs] == crossed[:-1] + [True]
    assert "time is up (0.05 minutes): 60 steps" in (run / "train.log").read_text()


def test_a_time_budgeted_run_resumes_on_its_clock(tmp_path, fast_overrides, monkeypatch):
    clock = StepClock(monkeypatch, dt=0.05, crash_at=25)
    budgeted = fast_overrides + ["schedule.time_budget_minutes=0.05", "checkpoint_every_steps=10"]
    with pytest.raises(Crash):
        train(overrides=budgeted)
    clock.crash_at = None
    summary = train(overrides=budgeted, resume=True).summary
    # the last checkpoint (end of epoch 1, step 22) holds the clock as it stood; steps 23-25 run again on it, so the
    # crash costs no budget: the run ends with the budget used after as many steps as an uninterrupted one
    assert "resumed" in (tmp_path / "run" / "train.log").read_text()
    assert summary["train_seconds"] == pytest.approx(3.0) and summary["steps"] == 60
    with pytest.raises(ValueError, match="already finished its 0.05 minutes; raise schedule.time_budget_minutes"):
        train(overrides=budgeted, resume=True)


def test_a_time_budget_stops_a_real_run(fast_overrides):
    summary = train(overrides=fast_overrides + ["schedule.time_budget_minutes=0.02"]).summary
    assert summary["train_seconds"] >= 1.2 and summary["steps"] > 0


def test_bf16_autocast_run_learns(tmp_path, fast_overrides):
    summary = train(overrides=fast_overrides + ["precision=bf16", "schedule.epochs=3"]).summary
    assert summary["precision"] == "bf16"
    losses = [r["train_loss"] for r in metrics(tmp_path / "run", "epoch")]
    assert losses[-1] < losses[0] - 0.05


def test_non_finite_loss_stops_with_the_step(fast_overrides):
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) at step \d+"):
        train(overrides=fast_overrides + ["optim.lr=1e30", "optim.name=sgd", "schedule.warmup_epochs=0"])


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    plain = FAST + ["data.augment.crop=none", "data.augment.hflip=0", "schedule.epochs=1", f"output_dir={tmp_path}"]
    full = train(overrides=plain + ["name=full"]).model
    accumulated = train(overrides=plain + ["name=accum", "optim.accum_steps=2"]).model
    for (name, a), b in zip(full.state_dict().items(), accumulated.state_dict().values()):
        if name.endswith("attn.qkv.bias"):  # softmax ignores the key bias: its gradient is rounding noise, which
            a, b = without_key_rows(a), without_key_rows(b)  # Adam's normalised step turns into lr-sized moves
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def without_key_rows(qkv_bias: torch.Tensor) -> torch.Tensor:
    q, _, v = qkv_bias.chunk(3)
    return torch.cat([q, v])


def test_existing_run_is_not_overwritten(fast_overrides):
    train(overrides=fast_overrides + ["schedule.epochs=1"])
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        train(overrides=fast_overrides + ["schedule.epochs=1"])


# The worker ends with os._exit: gloo's threads can abort the interpreter's finalisation ("terminate called without
# an active exception", SIGABRT; pytorch/pytorch#179291), after the results are written and the group destroyed.
DDP_WORKER = """
import os, sys, torch, torch.distributed as dist
from vitkit.train import train
from vitkit.train.distributed import full_state_dict
result = train(overrides=[a for a in sys.argv[1:] if a != "--resume"], resume="--resume" in sys.argv)
flat = torch.cat([v.flatten() for k, v in full_state_dict(result.model).items() if v.dtype.is_floating_point])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    torch.save(gathered, sys.argv[-1].split("=", 1)[1] + "/ddp_weights.pt")
dist.destroy_process_group()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""


def launch_two_processes(tmp_path, args, prelude=""):
    """torchrun with 2 CPU processes; returns both ranks' final weights (whole tensors, flattened)."""
    worker = tmp_path / "worker.py"
    worker.write_text(prelude + DDP_WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
               *args, f"output_dir={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return torch.load(tmp_path / "ddp_weights.pt")


def float_weights(state_dict):
    return torch.cat([v.flatten() for v in state_dict.values() if v.dtype.is_floating_point])


def assert_same_training(weights, expected):
    """Equal up to summation-order noise: AdamW turns float noise on near-zero gradients into lr-sized steps, so
    a few weights may drift by ~1e-3 while nearly all agree to 1e-4 (a lost optimiser state moves most of them)."""
    off = (weights - expected).abs()
    assert off.max() < 5e-3, f"largest difference {off.max():.2e}"
    assert (off > 1e-4).float().mean() < 0.01, f"{(off > 1e-4).float().mean():.1%} of the weights differ by > 1e-4"


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, mode):
    # a flat learning rate, so that one epoch resumed to two retraces an uninterrupted two-epoch run
    plain = FAST + ["data.augment.crop=none", "data.augment.hflip=0", "schedule.epochs=1", "ema.decay=0.9",
                    "optim.lr=2e-3", "schedule.min_lr=2e-3", "schedule.warmup_epochs=0"]
    single = train(overrides=plain + [f"output_dir={tmp_path}", "name=single"]).model
    rank0, rank1 = launch_two_processes(tmp_path, [*plain, f"distributed={mode}", f"name={mode}"])
    assert torch.equal(rank0, rank1)
    assert_same_training(rank0, float_weights(single.state_dict()))
    losses = {name: [r["loss"] for r in metrics(tmp_path / name, "step")] for name in ("single", mode)}
    assert losses[mode] == pytest.approx(losses["single"], rel=1e-4)
    # rank 0 wrote whole tensors (gathered from the shards under FSDP2), in the model's key order
    saved = final_weights(tmp_path / mode)
    torch.testing.assert_close(float_weights({k: saved[k] for k in single.state_dict()}), rank0)
    # and a resumable state: resumed for a second epoch, it lands where one uninterrupted process does
    longer = [a.replace("schedule.epochs=1", "schedule.epochs=2") for a in plain]
    single = train(overrides=longer + [f"output_dir={tmp_path}", "name=single2"]).model
    rank0, _ = launch_two_processes(tmp_path, [*longer, f"distributed={mode}", f"name={mode}", "--resume"])
    assert_same_training(rank0, float_weights(single.state_dict()))
    # the optimiser state came back too (saved whole, resharded on load): Adam's moments match, parameter by parameter
    states = [torch.load(tmp_path / name / "checkpoints" / "last" / "train_state.pt", weights_only=True)["optimizer"]
              for name in ("single2", mode)]
    for group, dist_group in zip(*(state["param_groups"] for state in states)):
        for key, dist_key in zip(group["params"], dist_group["params"]):
            torch.testing.assert_close(states[1]["state"][dist_key]["exp_avg_sq"],
                                       states[0]["state"][key]["exp_avg_sq"], rtol=1e-2, atol=1e-9)


SKEWED_CLOCK = """
import os, time, types
import vitkit.train.trainer as trainer
if os.environ["RANK"] == "1":
    trainer.time = types.SimpleNamespace(**{**vars(time), "monotonic": lambda: 2 * time.monotonic()})
"""


def test_two_processes_under_a_time_budget_stop_at_the_same_step(tmp_path):
    # rank 1's clock runs twice as fast: unless the ranks agree on one clock, it stops at about half the steps while
    # rank 0 waits in its next gradient all-reduce
    rank0, rank1 = launch_two_processes(tmp_path, [*FAST, "schedule.time_budget_minutes=0.03", "name=budget"],
                                        prelude=SKEWED_CLOCK)
    assert torch.equal(rank0, rank1)
    assert json.loads((tmp_path / "budget" / "summary.json").read_text())["train_seconds"] >= 1.8


def test_bad_images_stop_the_run_by_name_or_are_skipped_and_listed(tmp_path):
    from PIL import Image

    from vitkit.data import BadImageError

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        for split in ("train", "val"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "images" / "train" / "cats" / "broken.png").write_bytes(b"\x89PNG truncated")
    overrides = FAST + [f"data.dataset=imagefolder:{tmp_path / 'images'}", "data.batch_size=4", "schedule.epochs=1",
                        "model.img_size=16", "model.patch_size=4", "model.in_chans=3", f"output_dir={tmp_path}"]
    with pytest.raises(BadImageError, match="broken.png"):
        train(overrides=overrides + ["name=strict"])
    summary = train(overrides=overrides + ["name=skip", "data.skip_bad_images=true"]).summary
    assert [Path(p).name for p in summary["skipped_bad_images"]] == ["broken.png"]
