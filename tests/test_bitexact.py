"""Generated C versus the NumPy reference, bit for bit, after every training step.

Two independent computations: the C comes from lower -> bounds -> emit, the reference implements
the semantics from the parsed spec. Every parameter, statistic, PRNG state, prediction and the
evaluation count are compared with ==. Failures name the step, tensor and index; replay with
`nitrogen verify SPEC --seed S --batch B --semantics M`.
"""

from __future__ import annotations

import shutil

import pytest

from nitrogen import verify
from nitrogen.spec import with_semantics

from conftest import load

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="needs a C compiler")

MODES = ("nitrogen", "reference")
SMALL = ("tiny_mlp", "tiny_reference", "tiny_saturate")
PAPER_FAST = ("mlp1_mnist", "mlp2_fmnist")


def check(spec: str, mode: str, **kwargs: object) -> None:
    outcome = verify.run(with_semantics(load(f"{spec}.yaml"), mode), **kwargs)  # type: ignore[arg-type]
    assert outcome.ok, f"{spec} ({mode}, {kwargs}): {outcome.mismatch}; kept in {outcome.workdir}"
    shutil.rmtree(outcome.workdir, ignore_errors=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", (0, 1, 7))
@pytest.mark.parametrize("batch", (1, None, 64), ids=("b1", "spec", "b64"))
@pytest.mark.parametrize("spec", SMALL)
def test_small_networks(spec: str, mode: str, seed: int, batch: int | None) -> None:
    check(spec, mode, steps=25, seed=seed, batch=batch)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", (0, 3))
@pytest.mark.parametrize("batch", (1, 64), ids=("b1", "b64"))
@pytest.mark.parametrize("spec", PAPER_FAST)
def test_paper_mlps(spec: str, mode: str, seed: int, batch: int) -> None:
    check(spec, mode, steps=20, seed=seed, batch=batch)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", (5, 9))
@pytest.mark.parametrize("batch", (1, 64), ids=("b1", "b64"))
def test_mlp3(mode: str, seed: int, batch: int) -> None:
    check("mlp3_mnist", mode, steps=20, seed=seed, batch=batch)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", (1, 64), ids=("b1", "b64"))
def test_mlp4(mode: str, batch: int) -> None:
    check("mlp4_cifar10", mode, steps=20, seed=2 if batch == 1 else 3, batch=batch)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pattern", ("min", "max", "zero", "mixed"))
@pytest.mark.parametrize("spec", ("tiny_mlp", "tiny_reference", "mlp1_mnist"))
def test_edge_inputs(spec: str, mode: str, pattern: str) -> None:
    # all -128, all 127, all 0 (every logit ties at first: argmax must pick class 0), labels 0 and C-1
    check(spec, mode, steps=20, seed=11, pattern=pattern)


@pytest.mark.parametrize("mode", MODES)
def test_learning_rate_changes_mid_run(mode: str) -> None:
    check("tiny_mlp", mode, steps=20, seed=4, lr_schedule={5: 3 * 512, 12: 9 * 512, 15: 1})


def test_mismatch_is_reported_with_step_tensor_and_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: perturb the reference's first weight update and expect a precise report."""
    from nitrogen import reference

    original = reference.Model.train_step

    def perturbed(self: reference.Model, x, labels):  # type: ignore[no-untyped-def]
        stats = original(self, x, labels)
        if self.steps == 3:
            params = self.params
            params["output.weight"][1, 2] += 1
            self.set_params(params)
        return stats

    monkeypatch.setattr(reference.Model, "train_step", perturbed)
    outcome = verify.run(load("tiny_mlp.yaml"), steps=5, seed=0)
    assert outcome.mismatch is not None
    assert (outcome.mismatch.step, outcome.mismatch.tensor, outcome.mismatch.index) == (3, "output.weight", (1, 2))
    assert outcome.mismatch.ref_value == outcome.mismatch.c_value + 1
    shutil.rmtree(outcome.workdir, ignore_errors=True)


def test_reference_wraps_are_exercised_and_exact() -> None:
    """tiny_saturate (lr_inv 1, amp 1, no decay, T = 127) drives reference-mode weights past int32 within
    60 steps, so the wrap32 of the update is really compared, not just declared."""
    from nitrogen import reference

    model = with_semantics(load("tiny_saturate.yaml"), "reference")
    xs, ys = verify.make_batches(model, 60, 1, "random")
    watch = reference.Model(model, seed=0, ranges={"b0_wnew": (-(1 << 31), (1 << 31) - 1)})
    with pytest.raises(reference.RangeViolation):
        for s in range(60):
            watch.train_step(xs[s], ys[s])
    check("tiny_saturate", "reference", steps=60, seed=0)


@pytest.mark.parametrize("mode", MODES)
def test_parameters_move_between_reference_and_c(mode: str) -> None:
    """Parameters trained by the reference (so far from their initial range) are imported into the C in
    the reference's names and layouts; both then train on identically and stay bit-exact."""
    from nitrogen import reference

    model = with_semantics(load("tiny_mlp.yaml"), mode)
    donor = reference.Model(model, seed=99)
    xs, ys = verify.make_batches(model, 40, 5, "random")
    donor.lr_inv = 1  # large updates, so the transferred weights are big and unlike any initialisation
    for s in range(40):
        donor.train_step(xs[s], ys[s])
    params = donor.params
    assert max(int(abs(v).max()) for v in params.values()) > 1000
    outcome = verify.run(model, steps=20, seed=0, params=params)
    assert outcome.ok, outcome.mismatch
    shutil.rmtree(outcome.workdir, ignore_errors=True)
