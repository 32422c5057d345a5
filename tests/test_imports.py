"""Imports run one way (../shared/DESIGN.md): a lower room never imports a higher one, data and checkpoints know
nothing of each other, and only the command line imports the trainer. Every import counts, lazy ones included."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vitkit"
# From the ground up; rooms on one level may not import each other unless listed in SIDEWAYS.
LEVELS = {
    "config": 0, "preprocess": 0, "hardware": 0, "report": 0, "evaluation": 0, "representation": 0,
    "layers": 1,
    "models": 2,
    "checkpoints": 3, "data": 3, "selfsup": 3,
    "train": 4, "export": 4, "analysis": 4, "inference": 4, "bench": 4, "serve": 4, "robust": 4,
    "cli": 5, "__main__": 5, "__init__": 5,
}
SIDEWAYS = {("analysis", "inference"), ("inference", "export"), ("bench", "export"), ("__main__", "cli"),
            ("serve", "inference"), ("serve", "export"), ("serve", "analysis"),  # serving uses the model as they do
            ("robust", "analysis"), ("train", "robust")}  # robust draws with analysis's plots; training attacks
TRAINER_USERS = {"cli", "__main__", "train"}  # using a trained model (eval, predict, serve) never imports the trainer


def room(module: str) -> str:
    """vitkit.models.config -> models; vitkit (the package itself) -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> list[tuple[str, str, str]]:
    """(file, importing module, imported vitkit module) for every import statement in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("vitkit",) + path.relative_to(PACKAGE).with_suffix("").parts
        package = parts if parts[-1] == "__init__" else parts[:-1]
        module = ".".join(p for p in parts if p != "__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = list(package[:len(package) - node.level + 1]) if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x: x is a module of the package
                    targets = [f"{target}.{alias.name}" for alias in node.names]
                else:
                    targets = [target]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            found += [(str(path.relative_to(PACKAGE)), module, t) for t in targets if t.split(".")[0] == "vitkit"]
    return found


def test_every_room_has_a_level():
    rooms = {room(module) for _, module, _ in imports()} | {room(target) for _, _, target in imports()}
    assert rooms <= set(LEVELS), f"place these rooms in LEVELS (and DESIGN.md): {sorted(rooms - set(LEVELS))}"


def test_imports_run_one_way():
    wrong = []
    for path, module, target in imports():
        source, dest = room(module), room(target)
        if source == dest:
            continue
        upward = LEVELS[dest] > LEVELS[source]
        sideways = LEVELS[dest] == LEVELS[source] and (source, dest) not in SIDEWAYS
        trainer = dest == "train" and source not in TRAINER_USERS
        if upward or sideways or trainer:
            wrong.append(f"{path}: {module} imports {target}")
    assert not wrong, "imports against the architecture:\n" + "\n".join(wrong)


def test_the_walk_sees_lazy_imports():
    """The check is only as good as the walk: a function-level import in the trainer's CLI command must be found."""
    assert ("cli.py", "vitkit.cli", "vitkit.train") in imports()
