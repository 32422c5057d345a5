"""The training loop, top to bottom: config -> data -> model -> run folder (resume) -> optimiser -> epochs -> summary;
each epoch trains, then is evaluated (as the schedule says), logged and checkpointed."""
from __future__ import annotations

import contextlib
import functools
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from ..config import to_dict
from ..data import ClipDataset
from ..data.datasets import Dataset
from ..data.loader import EpochLoader
from ..hardware import cpu_kernels, has_native_bf16, slower_than_fp32
from ..checkpoints import from_pretrained
from ..models import ModelConfig, family_of, get_preset, is_preset
from ..preprocess import Preprocess
from ..report import write_json
from .adversarial import adversarial_images
from .config import TrainConfig, resolve_config, stated_model_fields
from .distributed import (DistContext, all_reduce_sum, full_state_dict, gradient_sync, init_distributed,
                          load_optimizer_state, optimizer_state, wrap_model)
from .ema import ModelEma
from .finetune import apply_mode, unfreeze_stage
from .optim import build_optimizer
from .progress import Progress, Schedule, build_schedule
from .run_log import RunLog
from .state import load_train_state, rng_state, save_checkpoint, set_rng_state
from .tasks import Task, task_class

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """What a run produced: its summary (as in summary.json) and the trained model (and its EMA copy)."""

    summary: dict[str, Any]
    model: torch.nn.Module
    ema_model: torch.nn.Module | None = None


class NonFiniteLossError(RuntimeError):
    """Raised when the loss stops being a number; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Raised after SIGINT/SIGTERM once a resumable checkpoint is written."""


def train(config: TrainConfig | dict | str | None = None, overrides: list[str] | dict | None = None,
          resume: bool = False) -> TrainResult:
    """Trains a model as the config says; the summary is also written to runs/<name>/summary.json."""
    cfg = resolve_config(config, overrides)
    device = pick_device(cfg.device)
    ctx = init_distributed(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    precision = pick_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)

    # the split seed stays fixed (one test set per dataset); unreadable images stop the run unless skipped and counted
    task = task_class(cfg.task)(cfg)
    train_set, test_set = task.build_datasets()
    model, model_notes = prepare_model(cfg, config, overrides, resume, train_set, task)
    if cfg.schedule.patch_drop_stages and start_patch_drop_rate(model) is None:
        raise ValueError(f"schedule.patch_drop_stages: a {family_of(model.cfg).name} model has no patch dropout "
                         "(Swin's windows need every patch); remove the stages")
    model.to(device)
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    train_loader, test_loader, steps_per_epoch = build_loaders(cfg, ctx, device, model, train_set, test_set, task)

    # the run folder, and where to resume from (the weights now, the rest once the optimiser exists)
    run_dir = Path(cfg.output_dir) / run_name(cfg, model)
    log = RunLog(run_dir, enabled=ctx.is_main, tensorboard=cfg.logging.tensorboard)
    state = load_resume_state(run_dir, model) if resume else None
    progress = Progress.from_dict(state["progress"]) if state else Progress()
    schedule = build_schedule(cfg, steps_per_epoch, progress, time.monotonic,
                              functools.partial(mean_seconds, ctx=ctx, device=device))
    open_run_folder(run_dir, cfg, ctx, log, schedule, resumed=state is not None)
    for line in [describe_run(cfg, model, train_set, test_set, device, precision, ctx, schedule, run_dir), *model_notes,
                 schedule.patch_drop_plan(start_patch_drop_rate(model)), precision_warning(precision, device),
                 cfg.adversarial.describe(bool(start_patch_drop_rate(model)))]:
        if line:
            log.text(line)
    run = build_run(cfg, ctx, device, precision, model, state, train_loader, test_loader, len(train_set.classes),
                    run_dir, log, schedule, task)

    schedule.start_clock()
    with StopRequest() as stop:
        for epoch in schedule.epochs():
            start = schedule.epoch_position(epoch)
            if note := unfreeze_stage(model, math.floor(start), cfg.finetune):
                log.text(note)
            record = train_one_epoch(run, epoch, stop)
            end = schedule.epoch_position(epoch + 1)
            progress.epoch, progress.batch = epoch + 1, 0
            evaluate_and_checkpoint(run, record, scored=schedule.should_evaluate(start, end))
            if schedule.finished():
                break
    if note := schedule.end_note():
        log.text(note)

    summary = summarize(run, record)
    if ctx.is_main:
        write_json(run_dir / "summary.json", summary)
    headline = task.metrics[0]
    log.text(f"done: test {task.label(headline)} {task.format(headline, summary['final_' + headline])} (best "
             f"{cfg.best_metric} {progress.best:.4g} at epoch {progress.best_epoch}); run saved in {run_dir}")
    log.close()
    return TrainResult(summary, model, run.ema.module if run.ema else None)


def prepare_model(cfg: TrainConfig, config: TrainConfig | dict | str | None, overrides: list[str] | dict | None,
                  resume: bool, train_set: Dataset, task: Task) -> tuple[torch.nn.Module, list[str]]:
    """The model to train, with the preprocessing its data gets (model.preprocess), and notes for the log."""
    num_classes = len(train_set.classes)

    # model: as the run's last checkpoint describes it (resume), the checkpoint's own architecture with this run's
    # classes, size and channels (finetune.init_from; config.yaml then records it), or fresh from the model section;
    # then frozen as the mode says. Data is normalised as the weights expect: the checkpoint's way, else the data's.
    if resume:
        model, model_notes = resumed_model(Path(cfg.output_dir) / run_name(cfg)), []
    elif cfg.finetune.init_from:
        model, model_notes = task.load_start(cfg.model, stated_model_fields(config, overrides), num_classes,
                                             train_set.num_channels)
        cfg.model = model_section(model, cfg.model.name)
    else:
        model, model_notes = build_model(cfg, num_classes, train_set.num_channels), []
    model_notes += apply_mode(model, cfg.finetune)
    stats = (model.preprocess if resume or cfg.finetune.init_from
             else Preprocess(tuple(train_set.mean), tuple(train_set.std))).for_channels(model.cfg.in_chans)
    model.preprocess = Preprocess(stats.mean, stats.std, cfg.data.augment.interpolation, cfg.data.augment.crop_pct)
    model.class_names = list(train_set.classes)
    return model, model_notes


def build_loaders(cfg: TrainConfig, ctx: DistContext, device: torch.device, model: torch.nn.Module,
                  train_set: Dataset, test_set: Dataset, task: Task) -> tuple[EpochLoader, EpochLoader, int]:
    """This rank's share of each optimizer step's batch, in optim.accum_steps micro-batches; the test batches; and
    the optimizer steps per epoch."""
    world_batch = cfg.data.batch_size
    if world_batch % (ctx.world_size * cfg.optim.accum_steps):
        raise ValueError(f"data.batch_size={world_batch} must divide by world size x optim.accum_steps "
                         f"({ctx.world_size} x {cfg.optim.accum_steps})")
    micro_batch = world_batch // (ctx.world_size * cfg.optim.accum_steps)
    frames = getattr(model.cfg, "num_frames", None)  # video models take clips of this many frames
    shared = dict(img_size=model.cfg.img_size, augment=cfg.data.augment, device=device, seed=cfg.seed,
                  num_workers=cfg.data.num_workers, world_size=ctx.world_size, rank=ctx.rank,
                  in_chans=model.cfg.in_chans, preprocess=model.preprocess, num_frames=frames)
    train_loader = task.build_loader(train_set, train=True, batch_size=micro_batch, drop_last=True, **shared)
    test_loader = task.build_loader(test_set, train=False, batch_size=cfg.data.eval_batch_size, drop_last=False,
                                    **shared)
    steps_per_epoch = len(train_loader) // cfg.optim.accum_steps
    if steps_per_epoch == 0:
        raise ValueError(f"data.batch_size={world_batch} is larger than the training set ({len(train_set)} images)")
    return train_loader, test_loader, steps_per_epoch


def open_run_folder(run_dir: Path, cfg: TrainConfig, ctx: DistContext, log: RunLog, schedule: Schedule,
                    resumed: bool) -> None:
    """Never overwrites a run nor resumes a finished one; a resumed run drops the records its checkpoint does not
    cover. Either way the folder gets the config this run trains with."""
    progress = schedule.progress
    if resumed:
        if schedule.finished():
            raise ValueError(f"{run_dir} already finished its {schedule.length}; raise {schedule.length_setting} to "
                             "train longer, or start a new run")
        log.truncate_after(progress.step, progress.epoch)
        log.text(f"resumed {run_dir} at epoch {progress.epoch}, step {progress.step}")
    elif ctx.is_main:
        if (run_dir / "checkpoints" / "last").exists():
            raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or choose another name=")
        run_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe_run(cfg: TrainConfig, model: torch.nn.Module, train_set: Dataset, test_set: Dataset,
                 device: torch.device, precision: str, ctx: DistContext, schedule: Schedule, run_dir: Path) -> str:
    """The log's first line: what trains on what, where, for how long, and where it is saved."""
    threads = torch.get_num_threads()  # `vitkit train` sets it with pick_threads; the library leaves it alone
    cpu = f" ({cpu_kernels().cpu_class})" if device.type == "cpu" else ""
    what = model.preset_name or ("the checkpoint" if cfg.finetune.init_from else f"a {family_of(model.cfg).name} model")
    items = "clips" if isinstance(train_set, ClipDataset) else "images"
    return (f"training {what} ({sum(p.numel() for p in model.parameters()):,} params) "
            f"on {cfg.data.dataset}: {len(train_set)} train / {len(test_set)} test {items}, {len(train_set.classes)} "
            f"classes; device {device}{cpu}, precision {precision}, {threads} CPU threads, world size {ctx.world_size}, "
            f"{schedule.describe()} -> {run_dir}")


@dataclass
class Run:
    """What the loop's stages share: the model as trained and as saved, its optimisation, data, log and schedule."""

    cfg: TrainConfig
    ctx: DistContext
    device: torch.device
    precision: str
    model: torch.nn.Module
    train_model: torch.nn.Module
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    task: Task
    train_loader: EpochLoader
    test_loader: EpochLoader
    num_classes: int
    run_dir: Path
    log: RunLog
    schedule: Schedule
    images_seen: int = 0
    started: float = field(default_factory=time.time)

    @property
    def progress(self) -> Progress:
        return self.schedule.progress

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def save(self, link: str, source: torch.nn.Module, train_state: dict[str, Any] | None) -> None:
        """checkpoints/<link>: FSDP2 gathers the weights, so every rank takes part and rank 0 writes."""
        weights, task_weights = full_state_dict(source), self.task.state_dict()
        if self.ctx.is_main:
            save_checkpoint(self.run_dir / "checkpoints", link, source, train_state, weights, task_weights)

    def save_last(self) -> None:
        """checkpoints/last, with all a resumed run needs to go on exactly from here."""
        state = {"progress": self.progress.to_dict(), "optimizer": optimizer_state(self.model, self.optimizer),
                 "ema": self.ema.state_dict() if self.ema else None,
                 "scaler": self.scaler.state_dict() if self.scaler else None,
                 "loader": self.train_loader.state_dict(), "rng": rng_state(), "config": to_dict(self.cfg)}
        self.save("last", self.model, state)


def build_run(cfg: TrainConfig, ctx: DistContext, device: torch.device, precision: str, model: torch.nn.Module,
              state: dict[str, Any] | None, train_loader: EpochLoader, test_loader: EpochLoader, num_classes: int,
              run_dir: Path, log: RunLog, schedule: Schedule, task: Task) -> Run:
    """The optimisation around the model, restored as a resumed run left it, with all else the stages share. FSDP2
    replaces the parameters by shards, so the model (and its EMA copy) is wrapped before the optimiser takes them;
    the task comes first, as it may shape the model (a pre-training encoder has no head) and add parts to train."""
    task.bind(model, num_classes, device)
    trained = task.trainable(model)
    ema = ModelEma(model, cfg.ema.decay, cfg.ema.warmup) if cfg.ema.decay else None
    if ema and state and state["ema"]:
        ema.load_state_dict(state["ema"])
    train_model = wrap_model(trained, ctx, cfg.distributed, device)
    if ema and cfg.distributed == "fsdp":
        wrap_model(ema.module, ctx, cfg.distributed, device)
    optimizer = build_optimizer(trained, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas,
                                cfg.optim.eps, cfg.optim.momentum, cfg.optim.layer_decay)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    if state:
        restore_train_state(state, trained, optimizer, scaler, train_loader)
        task.load_state_dict(state["task"])
    if cfg.compile:
        train_model = torch.compile(train_model, dynamic=False)  # one static graph per patch-dropout stage
        if cfg.adversarial.kind:  # the update's dropout draws must be the eager attack's
            torch._inductor.config.fallback_random = True
    return Run(cfg, ctx, device, precision, model, train_model, ema, optimizer, scaler, task, train_loader,
               test_loader, num_classes, run_dir, log, schedule)


def train_one_epoch(run: Run, epoch: int, stop: StopRequest) -> dict[str, Any]:
    """One pass over the training data, or what the time budget leaves of it; returns the epoch's record."""
    cfg, progress, schedule, loader = run.cfg, run.progress, run.schedule, run.train_loader
    if progress.batch == 0:
        loader.set_epoch(epoch)
    run.train_model.train()
    loss_sum, batches, started = 0.0, 0, time.time()
    bar = tqdm(total=len(loader), initial=progress.batch, desc=schedule.epoch_label(epoch + 1),
               disable=not (run.ctx.is_main and cfg.logging.progress), leave=False, dynamic_ncols=True)
    for images, targets in loader:
        micro = progress.batch % cfg.optim.accum_steps
        position = schedule.position()
        if micro == 0 and batches and schedule.finished():  # an epoch the budget cuts short has a step at least
            break
        lr = apply_schedule(run, position)
        update = micro == cfg.optim.accum_steps - 1
        loss = forward_backward(run, images, targets, epoch, sync=update or not run.ctx.enabled)
        progress.batch += 1
        loss_sum, batches = loss_sum + loss.item(), batches + 1
        run.images_seen += images.shape[0] * run.ctx.world_size
        bar.update(1)
        if update:
            optimizer_step(run.optimizer, run.model, run.scaler, cfg.optim.clip_grad)
            if run.ema:
                run.ema.update(run.model)
            progress.step += 1
            log_step(run, epoch, loss, lr, bar)
            checkpoint_step(run, stop)
    bar.close()
    mean_loss = torch.tensor(loss_sum / max(batches, 1), device=run.device)
    return {"kind": "epoch", "epoch": epoch + 1, "step": progress.step,
            "train_loss": mean_over_ranks(mean_loss, run.ctx), "epoch_seconds": time.time() - started}


def apply_schedule(run: Run, position: float) -> float:
    """Sets the lr (scaled per group, as layer decay says) and the patch-drop rate the schedule gives at `position`;
    returns the lr."""
    lr = run.schedule.lr(position)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    if (start := start_patch_drop_rate(run.model)) is not None:
        rate = run.schedule.patch_drop_rate(position, start)
        run.model.set_patch_drop_rate(run.cfg.adversarial.patch_drop_rate(rate))
    return lr


def start_patch_drop_rate(model: torch.nn.Module) -> float | None:
    """The model's configured patch-dropout rate; None for a family without patch dropout (Swin)."""
    return getattr(model.cfg, "patch_drop_rate", None)


def forward_backward(run: Run, images: torch.Tensor, targets: torch.Tensor, epoch: int, sync: bool) -> torch.Tensor:
    """One micro-batch's loss, its gradient added to the accumulated ones (all-reduced across ranks if `sync`)."""
    if run.cfg.adversarial.kind:  # the attack sees the update's random draws (see train/adversarial.py)
        images = adversarial_images(run.model, run.task.loss, images, targets, run.cfg.adversarial)
    with gradient_sync(run.train_model, sync), run.autocast():
        loss = run.task.loss(run.train_model, images, targets)
    if not math.isfinite(loss.item()):
        raise NonFiniteLossError(
            f"loss became {loss.item()} at step {run.progress.step} (epoch {epoch + 1}); the last good checkpoint is "
            f"{run.run_dir / 'checkpoints' / 'last'}. Lower optim.lr, set optim.clip_grad, or use precision=fp32")
    scaled = loss / run.cfg.optim.accum_steps
    (run.scaler.scale(scaled) if run.scaler else scaled).backward()
    return loss


def log_step(run: Run, epoch: int, loss: torch.Tensor, lr: float, bar: tqdm) -> None:
    """Every logging.log_every_steps: the loss (the mean over ranks), lr and throughput, to the log and the bar."""
    progress = run.progress
    if progress.step % run.cfg.logging.log_every_steps:
        return
    rate = run.images_seen / (time.time() - run.started)
    step_loss = mean_over_ranks(loss.detach(), run.ctx)
    bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}", **run.schedule.clock_note())
    run.log.metrics({"kind": "step", "step": progress.step, "epoch": epoch + 1,
                     "epoch_float": epoch + progress.batch / len(run.train_loader),
                     "loss": step_loss, "lr": lr, "img_s": rate})


def checkpoint_step(run: Run, stop: StopRequest) -> None:
    """Every checkpoint_every_steps, and on SIGINT/SIGTERM, which then ends the run where --resume picks it up."""
    requested, every = stop.requested, run.cfg.checkpoint_every_steps
    if requested or (every and run.progress.step % every == 0):
        run.save_last()
    if requested:
        raise TrainingInterrupted(f"stopped by {requested} at step {run.progress.step}; continue with --resume "
                                  f"(run {run.run_dir})")


def evaluate_and_checkpoint(run: Run, record: dict[str, Any], scored: bool) -> None:
    """Ends an epoch: the raw and EMA weights tested if `scored` (the best kept), then the record, the checkpoint and
    the log line; the record goes first, so a resumed run rewrites records past its checkpoint but never loses one."""
    cfg, progress = run.cfg, run.progress
    if scored:
        record.update(test_scores(run))
        value = record[cfg.best_metric]
        lower = run.task.lower_is_better(cfg.best_metric.removeprefix("ema_").removeprefix("val_"))
        if progress.best is None or (value < progress.best if lower else value > progress.best):
            progress.best, progress.best_epoch = value, record["epoch"]
            run.save("best", run.ema.module if cfg.best_metric.startswith("ema_") else run.model, None)
    run.log.metrics(record)
    run.save_last()
    run.log.plot_curves()
    task, headline = run.task, run.task.metrics[0]
    test_note = (f", test loss {record['val_loss']:.4f}" + ("" if headline == "loss" else
                 f", {task.label(headline)} {task.format(headline, record['val_' + headline])}")) if scored else ""
    ema_note = f", EMA {task.format(headline, record['ema_val_' + headline])}" if scored and run.ema else ""
    run.log.text(f"{run.schedule.epoch_label(record['epoch'])}: train loss {record['train_loss']:.4f}"
                 f"{test_note}{ema_note} ({record['epoch_seconds']:.1f}s)")


def test_scores(run: Run) -> dict[str, float]:
    """The task's scores of the raw weights (val_ keys) and, with EMA, of its copy (ema_val_ keys)."""
    models = {"val_": run.model, **({"ema_val_": run.ema.module} if run.ema else {})}
    return {prefix + metric: value for prefix, model in models.items()
            for metric, value in run.task.scores(model, run).items()}


def summarize(run: Run, record: dict[str, Any]) -> dict[str, Any]:
    """summary.json from the last epoch's record; train_seconds reads the clock (on every rank: under a time budget
    they agree on it), so it counts the final evaluation and checkpoint."""
    cfg, progress, task = run.cfg, run.progress, run.task
    finals = {f"final_{metric}": record[f"val_{metric}"] for metric in task.metrics if metric != "loss"}
    return {"run_dir": str(run.run_dir), "model": run.model.preset_name, "task": cfg.task, "dataset": cfg.data.dataset,
            "epochs": progress.epoch, "steps": progress.step, **finals, "final_loss": record["val_loss"],
            "best_metric": cfg.best_metric, "best": progress.best, "best_epoch": progress.best_epoch,
            f"ema_final_{task.metrics[0]}": record.get(f"ema_val_{task.metrics[0]}"), "device": str(run.device), "precision": run.precision, "world_size": run.ctx.world_size,
            "skipped_bad_images": sorted({**getattr(run.train_loader, "bad_images", {}),
                                          **getattr(run.test_loader, "bad_images", {})}),
            "train_seconds": run.schedule.seconds()}


def mean_seconds(seconds: float, ctx: DistContext, device: torch.device) -> float:
    """A clock reading every rank agrees on (their mean), so that all stop at the same step under a time budget."""
    return mean_over_ranks(torch.tensor(seconds, device=device), ctx) if ctx.enabled else seconds


def mean_over_ranks(value: torch.Tensor, ctx: DistContext) -> float:
    """The mean of a scalar over all ranks: what a single process with the global batch would report."""
    return all_reduce_sum(value.float().clone(), ctx).item() / ctx.world_size


def resumed_model(run_dir: Path) -> torch.nn.Module:
    """The model the run's last checkpoint describes (its weights load again with the training state, after the
    fine-tuning mode has added what it adds): neither the recipe nor finetune.init_from is needed to resume."""
    checkpoint = run_dir / "checkpoints" / "last"
    if not checkpoint.exists():
        raise ValueError(f"nothing to resume: {checkpoint} does not exist (start without --resume)")
    return from_pretrained(checkpoint.resolve())


def model_section(model: torch.nn.Module, recipe_name: str | None) -> ModelConfig:
    """The model trained, as a model section: its preset (else the recipe's) plus the fields that differ from it."""
    family = family_of(model.cfg).name
    name = model.preset_name if model.preset_name and is_preset(model.preset_name) else recipe_name
    name = name if name and get_preset(name).family == family else None
    base = get_preset(name).config.to_dict() if name else {}
    fields = {k: v for k, v in model.cfg.to_dict().items() if k != "num_classes" and base.get(k) != v}
    return ModelConfig.from_config({"family": family, **({"name": name} if name else {}), **fields})


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int) -> torch.nn.Module:
    """The model section's model; the dataset decides classes and (unless set) input channels."""
    return cfg.model.build(num_classes=num_classes, in_chans=cfg.model.fields.get("in_chans", in_chans))


def optimizer_step(optimizer: torch.optim.Optimizer, model: torch.nn.Module, scaler, clip_grad: float | None) -> None:
    """Unscale (fp16), clip, step, zero: one optimiser update."""
    if scaler:
        scaler.unscale_(optimizer)
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def load_resume_state(run_dir: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Loads the weights of runs/<name>/checkpoints/last into the model and returns the rest of its state."""
    checkpoint = run_dir / "checkpoints" / "last"
    if not checkpoint.exists():
        raise ValueError(f"nothing to resume: {checkpoint} does not exist (start without --resume)")
    return load_train_state(checkpoint.resolve(), model)


def restore_train_state(state: dict[str, Any], model, optimizer, scaler, loader) -> None:
    """Optimiser, scaler, loader position and RNG, as the checkpoint left them (EMA is restored with its copy)."""
    load_optimizer_state(model, optimizer, state["optimizer"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    loader.load_state_dict(state["loader"])
    set_rng_state(state["rng"])


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 autocast where the hardware computes in bf16 (GPUs that support it, CPUs with AVX512-BF16 or
    AMX: 1.9x fp32 training measured on AVX512-BF16), fp16 on older GPUs, fp32 on other CPUs (bf16 is emulated
    there and slower than fp32)."""
    if name != "auto":
        if name == "fp16" and device.type != "cuda":
            raise ValueError("precision=fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
        return name
    if has_native_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def precision_warning(precision: str, device: torch.device) -> str | None:
    """One line when the precision asked for is emulated on this CPU (bf16 without AVX512-BF16/AMX trains slower
    than fp32: 72 % against 86 % in the Fashion-MNIST budget on an AVX2 machine)."""
    if device.type != "cpu" or precision != "bf16":
        return None
    message = slower_than_fp32("bf16")
    return f"warning: {message}" if message else None


def run_name(cfg: TrainConfig, model: torch.nn.Module | None = None) -> str:
    """name=, or dataset-model-time for a new run (resuming needs the name)."""
    if cfg.name:
        return cfg.name
    if model is None:
        raise ValueError("resuming needs the run's name: pass name=<run> (vitkit train --resume RUN_DIR sets it)")
    dataset = cfg.data.dataset.split(":")[0]
    name = model.preset_name or Path(cfg.finetune.init_from or "model").stem
    return f"{dataset}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step, so it can checkpoint and exit cleanly."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
