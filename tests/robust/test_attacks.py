"""Attacks against torchattacks on the same tiny float64 model and images, random start off (APGD: the same start),
and the properties every attack must keep."""
import pytest
import torch

from vitkit.robust import apgd_ce, fgsm, pgd
from vitkit.robust.attacks import apgd_checkpoints, check_eps, perturb

from robust_helpers import smooth_images, tiny_pixel_model

torchattacks = pytest.importorskip("torchattacks", reason="installed --no-deps by .ci/run (it lists torchvision)")


@pytest.fixture(scope="module")
def setup():
    model = tiny_pixel_model()
    images = smooth_images(16)
    with torch.no_grad():
        labels = model(images).argmax(-1)  # every image starts correctly classified, so each attack has work to do
    return model, images, labels


def assert_same_images(mine, reference, step):
    """The same adversarial images: at most 0.1 % of pixels apart by more than one step (a sign step flips where a
    gradient is nearly zero)."""
    far = (mine - reference).abs() > step + 1e-12
    assert far.double().mean() <= 1e-3, f"{far.double().mean():.2%} of pixels differ by more than one step"


@pytest.mark.parametrize("norm, eps, step", [("linf", 8 / 255, 2 / 255), ("l2", 0.5, 0.1)])
def test_pgd_matches_torchattacks(setup, norm, eps, step):
    model, images, labels = setup
    kind = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    reference = kind(model, eps=eps, alpha=step, steps=10, random_start=False)(images, labels)
    mine = pgd(model, images, labels, eps, steps=10, step_size=step, norm=norm, random_start=False)
    assert_same_images(mine, reference, step)
    assert not torch.equal(mine, images)


def test_targeted_pgd_matches_torchattacks(setup):
    model, images, labels = setup
    targets = (labels + 1) % 5
    attack = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)
    attack.set_mode_targeted_by_label(quiet=True)
    mine = pgd(model, images, targets, 8 / 255, steps=10, step_size=2 / 255, random_start=False, targeted=True)
    assert_same_images(mine, attack(images, targets), 2 / 255)


def test_fgsm_matches_torchattacks(setup):
    model, images, labels = setup
    assert_same_images(fgsm(model, images, labels, 4 / 255), torchattacks.FGSM(model, eps=4 / 255)(images, labels),
                       4 / 255)


@pytest.mark.parametrize("norm, eps", [("linf", 4 / 255), ("l2", 0.25)])
def test_apgd_ce_matches_torchattacks_from_the_same_start(setup, monkeypatch, norm, eps):
    """torchattacks draws APGD's start from torch.rand / torch.randn: hand it the draw vitkit makes."""
    model, images, labels = setup
    images, labels = images[:8], labels[:8]
    draw = torch.rand if norm == "linf" else torch.randn
    start = draw(images.shape, generator=torch.Generator().manual_seed(7), dtype=images.dtype)
    attack = torchattacks.APGD(model, norm="Linf" if norm == "linf" else "L2", eps=eps, steps=12)
    with monkeypatch.context() as patch:
        patch.setattr(torch, "rand" if norm == "linf" else "randn", lambda *args, **kwargs: start.clone())
        best, robust, _, fooling = attack.attack_single_run(images, labels)
    reference = torch.where(robust.bool().view(-1, 1, 1, 1), best, fooling)
    mine = apgd_ce(model, images, labels, eps, steps=12, norm=norm, generator=torch.Generator().manual_seed(7))
    assert (~robust.bool()).any(), "the comparison needs images the attack fools"
    if norm == "linf":
        assert_same_images(mine, reference, 1 / 255)
    else:  # torchattacks' L2 projection adds 1e-12 to norms: agreement to float noise, not bit for bit
        torch.testing.assert_close(mine, reference, rtol=0, atol=1e-4)


def test_apgd_checkpoints_follow_the_papers_recursion():
    """p0 = 0, p1 = 0.22, p(j+1) = p(j) + max(p(j) - p(j-1) - 0.03, 0.06), times the budget."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    assert apgd_checkpoints(100) == [round(100 * x) for x in p[1:]]


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd_l2", "apgd", "apgd_l2"])
def test_perturbations_stay_in_the_eps_ball_and_in_range(setup, attack):
    model, images, labels = setup
    images = images.clone()
    images[:4] = images[:4].round()  # pixels at 0 and 1 exercise the box
    eps = 0.5 if attack.endswith("l2") else 3 / 255
    generator = torch.Generator().manual_seed(1)
    adv = {"fgsm": lambda: fgsm(model, images, labels, eps),
           "pgd": lambda: pgd(model, images, labels, eps, steps=5, generator=generator),
           "pgd_l2": lambda: pgd(model, images, labels, eps, steps=5, norm="l2", generator=generator),
           "apgd": lambda: apgd_ce(model, images, labels, eps, steps=8, generator=generator),
           "apgd_l2": lambda: apgd_ce(model, images, labels, eps, steps=8, norm="l2", generator=generator)}[attack]()
    delta = (adv - images).flatten(1)
    size = delta.norm(dim=1) if attack.endswith("l2") else delta.abs().amax(1)
    assert size.max() <= eps + 1e-9 and adv.min() >= 0 and adv.max() <= 1


def test_attacks_run_in_full_precision_and_keep_the_models_mode(setup):
    """Inside a bf16 autocast region (a training step) the attack's forward still computes in fp32."""
    model, images, labels = tiny_pixel_model(torch.float32), *setup[1:]
    seen = []
    model.model.head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pgd(model, images.float(), labels, 2 / 255, steps=2)
    assert seen == [torch.float32, torch.float32] and not model.training


def test_the_loss_rises_and_random_starts_follow_the_seed(setup):
    model, images, labels = setup
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        clean = loss(model(images), labels)
    runs = [pgd(model, images, labels, 4 / 255, steps=3, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    with torch.no_grad():
        assert loss(model(runs[0]), labels) > clean
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("eps, norm", [(-1 / 255, "linf"), (256 / 255, "linf"), (-0.1, "l2")])
def test_impossible_eps_is_refused(eps, norm):
    with pytest.raises(ValueError, match="eps"):
        check_eps(eps, norm)
    with pytest.raises(ValueError, match="eps"):
        perturb(lambda x: x.sum(), torch.zeros(1, 3, 4, 4), eps, 1, 0.1, norm)
