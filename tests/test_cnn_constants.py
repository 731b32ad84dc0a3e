"""`nitrogen check` prints the per-layer constants of the paper's CNNs; they must equal the values typed here
(not computed by nitrogen), which follow from the formulas of docs/semantics.md#nitro-scaling, #initialisation,
#learning-pools and #integersgd."""

from __future__ import annotations

import pytest

from nitrogen.cli import main

# (H_o, SF, B, adj, (kh, kw), (ph, pw), D, learn SF, learn B) per conv block; adj = H_o^2 // (kh*kw).
VGG8B_CIFAR = [
    (32, 6912, 60, 32, (8, 4), (0, 0), 4096, 1048576, 4),
    (32, 294912, 9, 16, (8, 8), (0, 0), 4096, 1048576, 4),
    (16, 589824, 6, 16, (4, 4), (0, 0), 4096, 1048576, 4),
    (16, 589824, 6, 8, (8, 4), (0, 0), 4096, 1048576, 4),
    (8, 1179648, 4, 8, (4, 2), (0, 0), 4096, 1048576, 4),
    (4, 1179648, 4, 8, (2, 1), (0, 0), 4096, 1048576, 4),
]
VGG8B_28 = [
    (28, 2304, 64, 24, (8, 4), (4, 0), 3584, 917504, 5),
    (28, 294912, 9, 12, (8, 8), (4, 4), 4096, 1048576, 4),
    (14, 589824, 6, 12, (4, 4), (2, 2), 4096, 1048576, 4),
    (14, 589824, 6, 6, (8, 4), (4, 2), 4096, 1048576, 4),
    (7, 1179648, 4, 6, (4, 2), (2, 1), 4096, 1048576, 4),
    (3, 1179648, 4, 4, (2, 1), (1, 0), 3072, 786432, 5),
]
# VGG11B: H_o, SF, B, opt-in amp and the pool kernels; every pool is unpadded with D = 4096.
VGG11B_ROWS = [(32, 6912, 60, 20480, (8, 4)), (32, 294912, 9, 20480, (8, 4)), (32, 294912, 9, 20480, (8, 4)),
               (32, 294912, 9, 10240, (8, 8)), (16, 589824, 6, 10240, (4, 4)), (16, 589824, 6, 5120, (8, 4)),
               (8, 1179648, 4, 5120, (4, 2)), (8, 1179648, 4, 5120, (4, 2)), (4, 1179648, 4, 5120, (2, 1))]
VGG11B = [(h, sf, b, amp // 640, k, (0, 0), 4096, 1048576, 4) for h, sf, b, amp, k in VGG11B_ROWS]
# (SF, B, amp) of the FC block, then (D, learn SF, learn B), then the output (SF, B).
FC_CIFAR = ((524288, 6, 640), (1024, 262144, 9), (262144, 9))
FC_28 = ((131072, 13, 640), (1024, 262144, 9), (262144, 9))


def _table(capsys: pytest.CaptureFixture[str], spec: str) -> dict[str, list[str]]:
    assert main(["check", f"specs/{spec}.yaml"]) == 0
    rows: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith(("b", "out ")) and ("conv" in line or "linear" in line or "output" in line):
            name, rest = line.split(None, 1)
            rows[name] = rest.split()
    return rows


@pytest.mark.parametrize("spec, convs, fc", [
    ("vgg8b_cifar10", VGG8B_CIFAR, FC_CIFAR), ("vgg8b_mnist", VGG8B_28, FC_28), ("vgg8b_fmnist", VGG8B_28, FC_28),
    ("vgg11b_cifar10", VGG11B, FC_CIFAR)])
def test_paper_cnn_constants(capsys: pytest.CaptureFixture[str], spec: str,
                             convs: list[tuple[int, int, int, int, tuple[int, int], tuple[int, int], int, int, int]],
                             fc: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int]]) -> None:
    rows = _table(capsys, spec)
    assert len(rows) == len(convs) + 2
    for i, (h_o, sf, bound, adj, (kh, kw), (ph, pw), d, lsf, lb) in enumerate(convs):
        # columns after "conv a->b kxk/p, in->out": H_o SF B amp adj (kh,kw) (ph,pw) D learnSF learnB
        cols = rows[f"b{i}"][4:]
        assert cols == [str(h_o), str(sf), str(bound), "640", str(adj), f"({kh},{kw})", f"({ph},{pw})", str(d),
                        str(lsf), str(lb)], (spec, i, cols)
    (fsf, fb, famp), (d, lsf, lb), (osf, ob) = fc
    fc_cols = rows[f"b{len(convs)}"][2:]
    assert fc_cols == ["1", str(fsf), str(fb), str(famp), "1", "-", str(d), str(lsf), str(lb)]
    assert rows["out"][2:5] == ["1", str(osf), str(ob)]


def test_opt_in_conv_amplification(capsys: pytest.CaptureFixture[str]) -> None:
    """conv_amp_adjust multiplies amp_model by adj = H_o^2 // (kh*kw) (docs/semantics.md#integersgd);
    tiny_cnn_adjust has 7x7 outputs: block 0 with an avg pool (4, 2) -> adj 49 // 8 = 6; block 1 with a max pool
    (4, 4) -> 3."""
    rows = _table(capsys, "tiny_cnn_adjust")
    assert rows["b0"][4:9] == ["7", str(256 * 2 * 9), rows["b0"][6], str(320 * 6), "6"]
    assert rows["b1"][4:9] == ["7", str(256 * 4 * 9), rows["b1"][6], str(320 * 3), "3"]
