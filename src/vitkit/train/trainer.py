"""The training loop, top to bottom: config -> data -> model -> optimiser -> (resume) -> epochs -> summary."""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from ..config import to_dict
from ..data import build_dataset, build_loader
from ..hardware import has_native_bf16
from ..checkpoints import from_pretrained
from ..models import ModelConfig, get_preset, is_preset
from ..preprocess import Preprocess
from ..report import write_json
from .config import TrainConfig, resolve_config, stated_model_fields
from .distill import build_criterion
from .distributed import (DistContext, all_reduce_sum, full_state_dict, gradient_sync, init_distributed,
                          load_optimizer_state, optimizer_state, wrap_model)
from .ema import ModelEma
from .evaluate import evaluate
from .finetune import apply_mode, load_for_finetuning, unfreeze_stage
from .losses import classification_loss
from .optim import build_optimizer
from .run_log import RunLog
from .schedule import staged_value, warmup_cosine
from .state import load_train_state, rng_state, save_checkpoint, set_rng_state


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
    threads = torch.get_num_threads()  # `vitkit train` sets it with pick_threads; the library leaves it alone
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)

    # data
    # the split seed stays fixed (one test set per dataset); unreadable images stop the run unless skipped and counted
    train_set = build_dataset(cfg.data.dataset, split="train", skip_bad_images=cfg.data.skip_bad_images)
    test_set = build_dataset(cfg.data.dataset, split="test", skip_bad_images=cfg.data.skip_bad_images)
    num_classes = len(train_set.classes)

    # model: as the run's last checkpoint describes it (resume), the checkpoint's own architecture with this run's
    # classes, size and channels (finetune.init_from; config.yaml then records it), or fresh from the model section;
    # then frozen as the mode says. Data is normalised as the weights expect: the checkpoint's way, else the data's.
    if resume:
        model, model_notes = resumed_model(Path(cfg.output_dir) / run_name(cfg)), []
    elif cfg.finetune.init_from:
        model, model_notes = load_for_finetuning(cfg.finetune, cfg.model, stated_model_fields(config, overrides),
                                                 num_classes, train_set.num_channels)
        cfg.model = model_section(model, cfg.model.name)
    else:
        model, model_notes = build_model(cfg, num_classes, train_set.num_channels), []
    model_notes += apply_mode(model, cfg.finetune)
    stats = (model.preprocess if resume or cfg.finetune.init_from
             else Preprocess(tuple(train_set.mean), tuple(train_set.std))).for_channels(model.cfg.in_chans)
    model.preprocess = Preprocess(stats.mean, stats.std, cfg.data.augment.interpolation, cfg.data.augment.crop_pct)
    model.class_names = list(train_set.classes)
    model.to(device)
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    img_size = model.cfg.img_size

    world_batch = cfg.data.batch_size
    if world_batch % (ctx.world_size * cfg.optim.accum_steps):
        raise ValueError(f"data.batch_size={world_batch} must divide by world size x optim.accum_steps "
                         f"({ctx.world_size} x {cfg.optim.accum_steps})")
    micro_batch = world_batch // (ctx.world_size * cfg.optim.accum_steps)
    train_loader = build_loader(train_set, batch_size=micro_batch, train=True, augment=cfg.data.augment,
                                img_size=img_size, device=device, seed=cfg.seed, drop_last=True,
                                num_workers=cfg.data.num_workers, world_size=ctx.world_size, rank=ctx.rank,
                                in_chans=model.cfg.in_chans, preprocess=model.preprocess)
    test_loader = build_loader(test_set, batch_size=cfg.data.eval_batch_size, train=False, augment=cfg.data.augment,
                               img_size=img_size, device=device, seed=cfg.seed, drop_last=False,
                               num_workers=cfg.data.num_workers, world_size=ctx.world_size, rank=ctx.rank,
                               in_chans=model.cfg.in_chans, preprocess=model.preprocess)
    steps_per_epoch = len(train_loader) // cfg.optim.accum_steps
    if steps_per_epoch == 0:
        raise ValueError(f"data.batch_size={world_batch} is larger than the training set ({len(train_set)} images)")
    total_steps = steps_per_epoch * cfg.schedule.epochs
    warmup_steps = round(cfg.schedule.warmup_epochs * steps_per_epoch)
    budget = cfg.schedule.time_budget_minutes * 60 if cfg.schedule.time_budget_minutes else None  # seconds

    # the run folder, and where to resume from (the weights now, the rest once the optimiser exists)
    run_dir = Path(cfg.output_dir) / run_name(cfg, model)
    log = RunLog(run_dir, enabled=ctx.is_main, tensorboard=cfg.logging.tensorboard)
    progress = {"epoch": 0, "step": 0, "batch": 0, "seconds": 0.0, "best": None, "best_epoch": None}

    def finished() -> bool:
        return progress["seconds"] >= budget if budget else progress["epoch"] >= cfg.schedule.epochs

    state = None
    if resume:
        state = load_resume_state(run_dir, model)
        progress = {"seconds": 0.0, **state["progress"]}  # checkpoints from before the clock count from zero
        if finished():
            length = (f"{cfg.schedule.time_budget_minutes:g} minutes; raise schedule.time_budget_minutes" if budget
                      else f"{cfg.schedule.epochs} epochs; raise schedule.epochs")
            raise ValueError(f"{run_dir} already finished its {length} to train longer, or start a new run")
        log.truncate_after(progress["step"], progress["epoch"])
        log.text(f"resumed {run_dir} at epoch {progress['epoch']}, step {progress['step']}")
    elif ctx.is_main:
        if (run_dir / "checkpoints" / "last").exists():
            raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or choose another name=")
        run_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    log.text(f"training {model.preset_name or 'the checkpoint'} ({sum(p.numel() for p in model.parameters()):,} params) on "
             f"{cfg.data.dataset}: {len(train_set)} train / {len(test_set)} test images, {num_classes} classes; "
             f"device {device}, precision {precision}, {threads} CPU threads, world size {ctx.world_size}, "
             f"{steps_per_epoch} steps/epoch x {cfg.schedule.epochs} epochs"
             + (f", stretched over {cfg.schedule.time_budget_minutes:g} minutes" if budget else "") + f" -> {run_dir}")
    for note in model_notes:
        log.text(note)
    if cfg.schedule.patch_drop_stages:
        log.text(f"patch dropout {model.cfg.patch_drop_rate}, then " + ", ".join(
            f"{rate} from epoch {start:g} "
            + (f"(minute {start / cfg.schedule.epochs * budget / 60:.1f})" if budget
               else f"(step {math.ceil(start * steps_per_epoch) + 1})")
            for start, rate in cfg.schedule.patch_drop_stages))

    # optimisation: FSDP2 replaces the parameters by shards, so the model (and its EMA copy) is wrapped first
    ema = ModelEma(model, cfg.ema.decay, cfg.ema.warmup) if cfg.ema.decay else None
    if ema and state and state["ema"]:
        ema.load_state_dict(state["ema"])
    train_model = wrap_model(model, ctx, cfg.distributed, device)
    if ema and cfg.distributed == "fsdp":
        wrap_model(ema.module, ctx, cfg.distributed, device)
    optimizer = build_optimizer(model, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas,
                                cfg.optim.eps, cfg.optim.momentum, cfg.optim.layer_decay)
    task_loss = functools.partial(classification_loss, kind=cfg.loss.kind,
                                  label_smoothing=cfg.loss.label_smoothing)
    criterion = build_criterion(cfg.distill, model, task_loss, num_classes, device)  # + DeiT teacher if set
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    if state:
        restore_train_state(state, model, optimizer, scaler, train_loader)
    if cfg.compile:
        train_model = torch.compile(train_model, dynamic=False)  # one static graph per patch-dropout stage
    stop = StopRequest()
    epochs_of = "" if budget else f"/{cfg.schedule.epochs}"  # under a time budget the epoch count is not known
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext

    def checkpoint_state() -> dict[str, Any]:
        return {"progress": dict(progress), "optimizer": optimizer_state(model, optimizer),
                "ema": ema.state_dict() if ema else None, "scaler": scaler.state_dict() if scaler else None,
                "loader": train_loader.state_dict(), "rng": rng_state(), "config": to_dict(cfg)}

    def save(link: str, source: torch.nn.Module, train_state: dict[str, Any] | None) -> None:
        weights = full_state_dict(source)  # FSDP2 gathers: every rank takes part, rank 0 writes
        if ctx.is_main:
            save_checkpoint(run_dir / "checkpoints", link, source, train_state, weights)

    def save_last() -> None:
        save("last", model, checkpoint_state())

    start_time, images_seen = time.time(), 0
    clock_start, seconds_before = time.monotonic(), progress["seconds"]

    def schedule_step() -> float:
        """Where the run is in its schedule, in optimizer steps: the steps taken, or under a time budget, the budget's
        share used so far; brings the clock (progress["seconds"], kept across resumes) up to date."""
        seconds = seconds_before + time.monotonic() - clock_start
        if budget and ctx.enabled:  # one clock for all ranks, or they would stop at different steps
            seconds = mean_over_ranks(torch.tensor(seconds, device=device), ctx)
        progress["seconds"] = seconds
        return total_steps * min(1.0, seconds / budget) if budget else progress["step"]

    with stop:
        for epoch in itertools.count(progress["epoch"]) if budget else range(progress["epoch"], cfg.schedule.epochs):
            if progress["batch"] == 0:
                train_loader.set_epoch(epoch)
            epoch_start_position = schedule_step() / steps_per_epoch if budget else epoch
            stage_note = unfreeze_stage(model, math.floor(epoch_start_position), cfg.finetune)
            if stage_note:
                log.text(stage_note)
            train_model.train()
            epoch_loss, epoch_batches, epoch_start = 0.0, 0, time.time()
            bar = tqdm(total=len(train_loader), initial=progress["batch"], desc=f"epoch {epoch + 1}{epochs_of}",
                       disable=not (ctx.is_main and cfg.logging.progress), leave=False, dynamic_ncols=True)
            for images, targets in train_loader:
                micro = progress["batch"] % cfg.optim.accum_steps
                position = schedule_step()
                if micro == 0 and epoch_batches and finished():  # an epoch the budget cuts short has a step at least
                    break
                lr = warmup_cosine(position, cfg.optim.lr, total_steps, warmup_steps, cfg.schedule.min_lr,
                                   cfg.schedule.warmup_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                model.set_patch_drop_rate(staged_value(position / steps_per_epoch, model.cfg.patch_drop_rate,
                                                       cfg.schedule.patch_drop_stages))
                sync = micro == cfg.optim.accum_steps - 1 or not ctx.enabled
                with gradient_sync(train_model, sync), autocast():
                    loss = criterion(train_model(images), images, targets)
                if not math.isfinite(loss.item()):
                    raise NonFiniteLossError(
                        f"loss became {loss.item()} at step {progress['step']} (epoch {epoch + 1}); the last good "
                        f"checkpoint is {run_dir / 'checkpoints' / 'last'}. Lower optim.lr, set optim.clip_grad, "
                        "or use precision=fp32")
                scaled = loss / cfg.optim.accum_steps
                (scaler.scale(scaled) if scaler else scaled).backward()
                progress["batch"] += 1
                epoch_loss, epoch_batches = epoch_loss + loss.item(), epoch_batches + 1
                images_seen += images.shape[0] * ctx.world_size
                bar.update(1)
                if micro != cfg.optim.accum_steps - 1:
                    continue
                optimizer_step(optimizer, model, scaler, cfg.optim.clip_grad)
                if ema:
                    ema.update(model)
                progress["step"] += 1
                if progress["step"] % cfg.logging.log_every_steps == 0:
                    rate = images_seen / (time.time() - start_time)
                    step_loss = mean_over_ranks(loss.detach(), ctx)
                    clock = {"minutes": f"{progress['seconds'] / 60:.1f}/{budget / 60:g}"} if budget else {}
                    bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}", **clock)
                    log.metrics({"kind": "step", "step": progress["step"], "epoch": epoch + 1,
                                 "epoch_float": epoch + progress["batch"] / len(train_loader),
                                 "loss": step_loss, "lr": lr, "img_s": rate})
                if cfg.checkpoint_every_steps and progress["step"] % cfg.checkpoint_every_steps == 0:
                    save_last()
                if stop.requested:
                    save_last()
                    raise TrainingInterrupted(f"stopped by {stop.requested} at step {progress['step']}; "
                                              f"continue with --resume (run {run_dir})")
            bar.close()

            # end of epoch: evaluate the raw and the EMA weights (every eval_every_epochs of the schedule, and last),
            # checkpoint, log; an epoch the time budget cut short is the last
            end_step = schedule_step()  # the clock too, for the checkpoint
            epoch_end_position = end_step / steps_per_epoch if budget else epoch + 1
            progress.update(epoch=epoch + 1, batch=0)
            last = finished()
            mean_loss = torch.tensor(epoch_loss / max(epoch_batches, 1), device=device)
            record = {"kind": "epoch", "epoch": epoch + 1, "step": progress["step"],
                      "train_loss": mean_over_ranks(mean_loss, ctx), "epoch_seconds": time.time() - epoch_start}
            scored = last or (math.floor(epoch_end_position / cfg.eval_every_epochs)
                              > math.floor(epoch_start_position / cfg.eval_every_epochs))
            if scored:
                scores = evaluate(model, test_loader, num_classes, device, autocast_dtype, ctx)
                record.update(val_top1=scores["top1"], val_top5=scores["top5"], val_loss=scores["loss"])
                if ema:
                    ema_scores = evaluate(ema.module, test_loader, num_classes, device, autocast_dtype, ctx)
                    record.update(ema_val_top1=ema_scores["top1"], ema_val_top5=ema_scores["top5"],
                                  ema_val_loss=ema_scores["loss"])
                value = record[cfg.best_metric]
                improved = progress["best"] is None or (value < progress["best"] if cfg.best_metric.endswith("loss")
                                                        else value > progress["best"])
                if improved:
                    progress.update(best=value, best_epoch=epoch + 1)
                    save("best", ema.module if cfg.best_metric.startswith("ema_") else model, None)
            log.metrics(record)  # before the checkpoint: a resumed run rewrites records past it, never loses one
            save_last()
            log.plot_curves()
            test_note = f", test loss {record['val_loss']:.4f}, top-1 {record['val_top1']:.2f}%" if scored else ""
            ema_note = f", EMA {record['ema_val_top1']:.2f}%" if scored and ema else ""
            log.text(f"epoch {epoch + 1}{epochs_of}: train loss {record['train_loss']:.4f}"
                     f"{test_note}{ema_note} ({record['epoch_seconds']:.1f}s)")
            if last and budget:
                log.text(f"time is up ({cfg.schedule.time_budget_minutes:g} minutes): {progress['step']} steps, "
                         f"{progress['step'] / steps_per_epoch:.2f} passes over the training data")
                break

    schedule_step()  # the clock, final evaluation and checkpoint included
    summary = {"run_dir": str(run_dir), "model": model.preset_name, "dataset": cfg.data.dataset,
               "epochs": progress["epoch"], "steps": progress["step"], "final_top1": record["val_top1"],
               "final_top5": record["val_top5"], "best_metric": cfg.best_metric, "best": progress["best"],
               "best_epoch": progress["best_epoch"], "ema_final_top1": record.get("ema_val_top1"),
               "device": str(device), "precision": precision, "world_size": ctx.world_size,
               "skipped_bad_images": sorted({**getattr(train_loader, "bad_images", {}),
                                             **getattr(test_loader, "bad_images", {})}),
               "train_seconds": progress["seconds"]}
    if ctx.is_main:
        write_json(run_dir / "summary.json", summary)
    log.text(f"done: test top-1 {summary['final_top1']:.2f}% (best {cfg.best_metric} {progress['best']:.2f} at epoch "
             f"{progress['best_epoch']}); run saved in {run_dir}")
    log.close()
    return TrainResult(summary, model, ema.module if ema else None)


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
    name = model.preset_name if model.preset_name and is_preset(model.preset_name) else recipe_name
    base = get_preset(name).config.to_dict() if name else {}
    fields = {k: v for k, v in model.cfg.to_dict().items() if k != "num_classes" and base.get(k) != v}
    return ModelConfig.from_config({"name": name, **fields} if name else fields)


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
