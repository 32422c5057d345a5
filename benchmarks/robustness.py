"""How fragile the CIFAR-10 budget model is, beside its adversarially trained twin and a 6-class near-OOD model:
the numbers of docs/robustness.md.

    python benchmarks/robustness.py                    # everything (about two hours on a quiet 2-core CPU)
    python benchmarks/robustness.py --skip-training    # measure runs trained before (in --output-dir)
    python benchmarks/robustness.py --smoke            # seconds: every step at toy size, to check the plumbing

Steps: (1) the plain model, ../shared/checkpoints/cifar10_budget (trained 29.5 minutes with
configs/cifar10_cpu_budget.yaml) unless --train-plain retrains it here for --minutes; (2) its twin,
configs/cifar10_cpu_budget_adversarial.yaml (fgsm_rs at 8/255), trained for --minutes; (3) configs/cifar10_near_ood.yaml
(six classes) trained for --near-minutes. Then `vitkit robustness` on each: plain and twin get PGD-20 and APGD-CE at
2/255 and 8/255, the 15 corruptions at 5 severities and far/noise OOD; the six-class model gets near OOD (its four
held-out classes), far and noise OOD. Every evaluation uses --limit test images (1,000) and --fit-images training
images for the OOD detectors. Prints two tables and writes benchmarks/results/robustness.json (with each step's
minutes); each model's report.html lands in --output-dir.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vitkit.report import format_table, write_json
from vitkit.robust.pipeline import RobustnessSettings, measure_robustness
from vitkit.train import train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CIFAR = f"cifar10:{SHARED / 'datasets' / 'cifar10' / 'cifar-10-batches-py'}"
FASHION = f"fashion-mnist:{SHARED / 'datasets' / 'fashion-mnist'}"
PLAIN_CHECKPOINT = SHARED / "checkpoints" / "cifar10_budget"
OUTSIDE_THE_CLOCK_MINUTES = 0.5  # as benchmarks/train_budget.py: loading, the final evaluation, the last checkpoint
# --smoke: a toy model on scikit-learn's digits (as RGB, labels 0-5 kept for the six-class recipe), seconds per step
SMOKE = ["data.dataset=digits", "model.in_chans=3", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
         "model.conv_stem=[8,16]", "logging.progress=false"]


def train_recipe(recipe: str, name: str, minutes: float, output_dir: Path, extra: list[str]) -> tuple[Path, dict]:
    """Trains a recipe on the budget clock; returns the run folder and what the step cost."""
    start, clock = time.time(), max(minutes - OUTSIDE_THE_CLOCK_MINUTES, 0.05)
    summary = train(ROOT / "configs" / recipe, [f"data.dataset={CIFAR}", f"output_dir={output_dir}", f"name={name}",
                                                f"schedule.time_budget_minutes={clock}", *extra]).summary
    return output_dir / name, {"step": f"train {name}", "minutes": round((time.time() - start) / 60, 1),
                               "epochs": summary["epochs"], "top1": round(summary["final_top1"], 2)}


def measure(source: Path, name: str, output_dir: Path, settings: RobustnessSettings,
            data: str | None) -> tuple[dict, dict]:
    start = time.time()
    record, _ = measure_robustness(str(source), output_dir / f"robustness-{name}", data, settings)
    return record, {"step": f"measure {name}", "minutes": round((time.time() - start) / 60, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=29.5, help="training clock of the plain model and its twin")
    parser.add_argument("--near-minutes", type=float, default=15.0, help="training clock of the six-class model")
    parser.add_argument("--train-plain", action="store_true",
                        help="retrain the plain model here instead of using ../shared/checkpoints/cifar10_budget")
    parser.add_argument("--skip-training", action="store_true", help="measure the runs already in --output-dir")
    parser.add_argument("--limit", type=int, default=1000, help="test images (and OOD images) per measurement")
    parser.add_argument("--fit-images", type=int, default=10000, help="training images the OOD detectors fit on")
    parser.add_argument("--pgd-steps", type=int, default=20)
    parser.add_argument("--apgd-steps", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="toy sizes everywhere: checks the script in seconds")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/robustness"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "robustness.json")
    args = parser.parse_args()
    if not (SHARED / "datasets").exists():
        print(f"the datasets are expected in {SHARED / 'datasets'}", file=sys.stderr)
        return 1
    if args.smoke:
        args.minutes = args.near_minutes = 0.55
        args.limit, args.fit_images, args.pgd_steps, args.apgd_steps = 16, 100, 2, 3
        args.train_plain, args.output_dir = True, args.output_dir / "smoke"
        args.out = args.out.with_name("robustness_smoke.json")
    steps, runs = [], {}
    names = {"plain": "cifar10_cpu_budget.yaml", "fgsm_rs": "cifar10_cpu_budget_adversarial.yaml",
             "near_ood": "cifar10_near_ood.yaml"}
    for name, recipe in names.items():
        if name == "plain" and not args.train_plain:
            runs[name] = PLAIN_CHECKPOINT
        elif args.skip_training:
            runs[name] = args.output_dir / name
        else:
            minutes = args.near_minutes if name == "near_ood" else args.minutes
            extra = SMOKE + (["data.subset.classes=[0,1,2,3,4,5]"] if name == "near_ood" else []) if args.smoke else []
            runs[name], step = train_recipe(recipe, name, minutes, args.output_dir, extra)
            steps.append(step)

    shared = dict(limit=args.limit, fit_images=args.fit_images, pgd_steps=args.pgd_steps, apgd_steps=args.apgd_steps,
                  eps=[2.0, 8.0], attacks=["pgd", "apgd"])
    if args.smoke:
        shared.update(corruptions=["gaussian_noise", "frost"], severities=[1, 5])
    far = [FASHION, "noise:gaussian", "noise:uniform"]
    records = {}
    for name in ("plain", "fgsm_rs"):
        records[name], step = measure(runs[name], name, args.output_dir, RobustnessSettings(ood=far, **shared), CIFAR)
        steps.append(step)
    near = RobustnessSettings(**{**shared, "attacks": [], "corruptions": []}, ood=["held-out", *far])
    records["near_ood"], step = measure(runs["near_ood"], "near_ood", args.output_dir, near, None)
    steps.append(step)

    rows = []
    for name, record in records.items():
        attacks = record.get("attacks", {}).get("accuracy", {})
        corruptions = record.get("corruptions", {})
        rows.append([name, record["images"], round(record["clean_accuracy"], 2)]
                    + [round(attacks[a][i], 2) if a in attacks else "" for a in ("pgd", "apgd") for i in (0, 1)]
                    + [round(corruptions["mean_corruption_accuracy"], 2) if corruptions else ""])
    print(format_table(rows, ["model", "images", "clean", f"PGD-{args.pgd_steps} 2/255", f"PGD-{args.pgd_steps} 8/255",
                              "APGD-CE 2/255", "APGD-CE 8/255", "mean corruption"]))
    ood_rows = [[name, set_name if set_name.startswith("noise") else set_name.split(":")[0], detector,
                 round(m["auroc"], 2), round(m["fpr95"], 2)]
                for name, record in records.items() for set_name, found in record["ood"]["sets"].items()
                for detector, m in found["metrics"].items()]
    print()
    print(format_table(ood_rows, ["model", "OOD set", "detector", "AUROC", "FPR95"]))
    print()
    print(format_table([[s["step"], s["minutes"]] for s in steps], ["step", "minutes"]))
    path = write_json(args.out, {"settings": vars(args),
                                 "runs": {k: str(v) for k, v in runs.items()}, "steps": steps, "results": records})
    print(f"\nwritten to {path}; reports in {args.output_dir}/robustness-*/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
