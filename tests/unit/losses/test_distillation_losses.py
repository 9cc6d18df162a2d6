"""The distillation slot's members against their formulas, written out here with plain loops, and
the identities their papers state; the reference suites' conventions where ours follow them."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from transferlab.losses.distillation.at import AttentionTransfer
from transferlab.losses.distillation.base import DistillationInputs
from transferlab.losses.distillation.crd import ContrastiveRepresentationDistillation, nce_loss
from transferlab.losses.distillation.dkd import DecoupledKD, decoupled_kd
from transferlab.losses.distillation.kd import kd_divergence
from transferlab.losses.distillation.pkt import ProbabilisticKnowledgeTransfer
from transferlab.losses.distillation.rkd import RelationalKD, triplet_angles
from transferlab.losses.distillation.sp import SimilarityPreserving


def maps(seed: int, n: int = 3, c: int = 4, hw: int = 4) -> torch.Tensor:
    return torch.randn(n, c, hw, hw, generator=torch.Generator().manual_seed(seed))


def test_at_is_the_mean_squared_difference_of_normalised_channel_energy_maps():
    s, t = maps(0).requires_grad_(True), maps(1, c=7)  # different widths: AT compares H×W maps
    loss = AttentionTransfer(layers=["x"])(
        DistillationInputs(torch.zeros(3), student_maps={"x": s}, teacher_maps={"x": t})
    )
    expected = 0.0
    for n in range(3):
        a_s = [sum(s[n, c, i, j].item() ** 2 for c in range(4)) / 4 for i in range(4) for j in range(4)]
        a_t = [sum(t[n, c, i, j].item() ** 2 for c in range(7)) / 7 for i in range(4) for j in range(4)]
        ns, nt = math.sqrt(sum(v * v for v in a_s)), math.sqrt(sum(v * v for v in a_t))
        expected += sum((x / ns - y / nt) ** 2 for x, y in zip(a_s, a_t, strict=True))
    assert loss.item() == pytest.approx(expected / (3 * 16), rel=1e-5)
    loss.backward()
    assert s.grad.abs().sum() > 0
    same = AttentionTransfer(layers=["x"])(
        DistillationInputs(torch.zeros(3), student_maps={"x": t}, teacher_maps={"x": t})
    )
    assert same.item() == pytest.approx(0.0, abs=1e-12)


def test_at_pools_the_larger_map_to_the_smaller_and_pairs_layers_by_position():
    s, t = maps(0, hw=8), maps(1, hw=4)
    member = AttentionTransfer(layers=["a"], reference_layers=["b"])
    pooled = AttentionTransfer(layers=["a"], reference_layers=["b"])(
        DistillationInputs(torch.zeros(3), student_maps={"a": F.avg_pool2d(s, 2)}, teacher_maps={"b": t})
    )
    assert member(
        DistillationInputs(torch.zeros(3), student_maps={"a": s}, teacher_maps={"b": t})
    ).item() == pytest.approx(pooled.item())
    with pytest.raises(ValueError, match="must pair one teacher layer with each student layer"):
        AttentionTransfer(layers=["3", "4"], reference_layers=["5"])


def test_sp_compares_the_row_normalised_similarity_matrices():
    s, t = maps(0).requires_grad_(True), maps(1, c=9)
    loss = SimilarityPreserving(layers=["x"])(
        DistillationInputs(torch.zeros(3), student_maps={"x": s}, teacher_maps={"x": t})
    )

    def g(x):
        q = x.flatten(1).tolist()
        gram = [[sum(a * b for a, b in zip(qi, qj, strict=True)) for qj in q] for qi in q]
        return [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in gram]

    gs, gt = g(s.detach()), g(t)
    expected = sum((gt[i][j] - gs[i][j]) ** 2 for i in range(3) for j in range(3)) / 9
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert s.grad.abs().sum() > 0


def test_pkt_is_the_kl_between_cosine_kernel_similarity_distributions():
    g = torch.Generator().manual_seed(0)
    fs, ft = torch.randn(4, 5, generator=g), torch.randn(4, 3, generator=g)
    loss = ProbabilisticKnowledgeTransfer()(
        DistillationInputs(torch.zeros(4), student_features=fs, teacher_features=ft)
    )

    def p(f):
        unit = [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in f.tolist()]
        k = [[(sum(a * b for a, b in zip(u, v, strict=True)) + 1) / 2 for v in unit] for u in unit]
        return [[v / sum(row) for v in row] for row in k]

    ps, pt = p(fs), p(ft)
    eps = 1e-7
    expected = (
        sum(pt[i][j] * math.log((pt[i][j] + eps) / (ps[i][j] + eps)) for i in range(4) for j in range(4)) / 16
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert ProbabilisticKnowledgeTransfer()(
        DistillationInputs(torch.zeros(4), student_features=ft, teacher_features=ft)
    ).item() == pytest.approx(0.0, abs=1e-6)


def test_rkd_matches_distances_and_angles_and_ignores_scale_and_rotation():
    g = torch.Generator().manual_seed(0)
    ft = torch.randn(5, 6, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    same_shape = 3.0 * ft @ rotation  # the same geometry: scaled and rotated
    rkd = RelationalKD()
    assert rkd(
        DistillationInputs(torch.zeros(5), student_features=same_shape, teacher_features=ft)
    ).item() == pytest.approx(0.0, abs=1e-5)
    fs = torch.randn(5, 6, generator=g)
    # the angle at vertex j between (f_i − f_j) and (f_k − f_j), by hand for one triplet
    angles = triplet_angles(fs).view(5, 5, 5)
    u, v = fs[0] - fs[1], fs[2] - fs[1]
    assert angles[1, 0, 2].item() == pytest.approx((u @ v / (u.norm() * v.norm())).item(), rel=1e-5)
    dist_only = RelationalKD(angle_weight=0.0)(
        DistillationInputs(torch.zeros(5), student_features=fs, teacher_features=ft)
    )
    d_s, d_t = torch.cdist(fs, fs), torch.cdist(ft, ft)
    d_s, d_t = d_s / d_s[d_s > 0].mean(), d_t / d_t[d_t > 0].mean()
    assert dist_only.item() == pytest.approx(25 * F.smooth_l1_loss(d_s, d_t).item(), rel=1e-4)


def test_dkd_splits_kd_as_its_paper_states():
    """KD = TCKD + (1 − p_t^T)·NCKD (Zhao et al., Eq. 5; here with T and the T² factor)."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    labels = torch.randint(0, 10, (6,), generator=g)
    for temperature in (1.0, 4.0):
        per_image = []
        for i in range(6):
            tckd, nckd = decoupled_kd(s[i : i + 1], t[i : i + 1], labels[i : i + 1], temperature)
            p_t = F.softmax(t[i] / temperature, dim=0)[labels[i]]
            per_image.append(tckd + (1 - p_t) * nckd)
        kd = kd_divergence(s, t, temperature)
        assert kd.item() == pytest.approx(torch.stack(per_image).mean().item(), rel=1e-4)


def test_dkd_warms_up_over_its_fraction_of_the_run():
    """mdistiller's 20 of 240 epochs on its run, and the same fraction of a 24-epoch one."""
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.tensor([0, 1, 2, 3])
    tckd, nckd = decoupled_kd(s, t, y, 4.0)
    member = DecoupledKD(alpha=1.0, beta=8.0, warmup=1 / 12)
    full = (tckd + 8 * nckd).item()

    def at(epoch: int, epochs: int) -> float:
        inputs = DistillationInputs(y, student_logits=s, teacher_logits=t, epoch=epoch, epochs=epochs)
        return member(inputs).item()

    assert at(0, 240) == pytest.approx(full / 20) and at(9, 240) == pytest.approx(full / 2)
    assert at(19, 240) == pytest.approx(full) and at(50, 240) == pytest.approx(full)
    assert at(0, 24) == pytest.approx(full / 2) and at(1, 24) == pytest.approx(full)
    with pytest.raises(ValueError, match="warmup"):
        DecoupledKD(warmup=20)  # an epoch count where a fraction belongs


def test_crd_nce_against_its_formula():
    scores = torch.tensor([[0.5, 0.1, 0.2], [0.3, 0.4, 0.05]])  # positive first, K = 2
    n = 10
    noise = 2 / n
    expected = 0.0
    for row in scores.tolist():
        expected += math.log(row[0] / (row[0] + noise + 1e-7)) + sum(
            math.log(noise / (v + noise + 1e-7)) for v in row[1:]
        )
    assert nce_loss(scores, n).item() == pytest.approx(-expected / 2, rel=1e-6)


def crd_inputs(seed: int, n: int = 6) -> DistillationInputs:
    g = torch.Generator().manual_seed(seed)
    return DistillationInputs(
        torch.zeros(n, dtype=torch.long),
        student_features=torch.randn(n, 8, generator=g),
        teacher_features=torch.randn(n, 12, generator=g),
        indices=torch.arange(n) + 3,
    )


def test_crd_moves_the_memory_of_the_batch_only_and_trains_its_embeddings():
    torch.manual_seed(0)
    crd = ContrastiveRepresentationDistillation(embed_dim=4, negatives=5, momentum=0.5)
    crd.build(student_dim=8, teacher_dim=12, memory_size=20)
    before = crd.memory_student.clone()
    inputs = crd_inputs(0)
    loss = crd(inputs)
    loss.backward()
    assert crd.embed_student.weight.grad.abs().sum() > 0 and crd.embed_teacher.weight.grad.abs().sum() > 0
    moved = (crd.memory_student != before).any(1)
    assert moved.nonzero().flatten().tolist() == list(range(3, 9))  # the batch's positions
    v_s = F.normalize(crd.embed_student(inputs.student_features), dim=1).detach()
    expected = F.normalize(0.5 * before[3:9] + 0.5 * v_s, dim=1)
    assert torch.allclose(crd.memory_student[3:9], expected, atol=1e-6)
    assert (crd.normalisers > 0).all()  # Z fixed at the first step, kept in a buffer


def test_crd_memory_and_normalisers_are_saved_and_restored():
    torch.manual_seed(0)
    crd = ContrastiveRepresentationDistillation(embed_dim=4, negatives=5)
    crd.build(8, 12, 20)
    crd(crd_inputs(0))
    state = crd.state_dict()
    assert {"memory_student", "memory_teacher", "normalisers"} <= set(state)
    restored = ContrastiveRepresentationDistillation(embed_dim=4, negatives=5)
    restored.build(8, 12, 20)
    restored.load_state_dict(state)
    assert torch.equal(restored.memory_teacher, crd.memory_teacher) and torch.equal(
        restored.normalisers, crd.normalisers
    )


def test_crd_refuses_more_negatives_than_the_training_split_holds_and_caps_its_default():
    from transferlab.losses.slot import SetupContext
    from transferlab.nets import resnet8

    context = SetupContext(stage="fit", net=resnet8(num_classes=3), num_classes=3, training_size=100)
    context.reference = type("T", (), {"feature_dim": 64})()
    with pytest.raises(
        ValueError,
        match=r"negatives=16384 needs more than 16384 training images and the training split has 100",
    ):
        ContrastiveRepresentationDistillation(negatives=16384).setup(context)
    default = ContrastiveRepresentationDistillation()
    default.setup(context)
    assert default.negatives == 99 and default.memory_student.shape == (100, 128)


def test_rkd_gradient_reaches_the_student_through_distances_and_angles_and_never_the_teacher():
    """RKD against its definition with loops (RepDistiller's ``RKDLoss``: the teacher's distances and
    angles under no_grad, the student's live): values and the student's gradient, in float64."""
    from transferlab.losses.distillation.base import DistillationInputs
    from transferlab.losses.distillation.rkd import RelationalKD

    g = torch.Generator().manual_seed(3)
    student = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)

    def distances(f: torch.Tensor) -> torch.Tensor:
        d = torch.stack([torch.stack([(f[i] - f[j]).norm() for j in range(5)]) for i in range(5)])
        return d / d[d > 0].mean()

    def angles(f: torch.Tensor) -> torch.Tensor:
        values = []
        for j in range(5):
            for i in range(5):
                for k in range(5):
                    a, b = f[i] - f[j], f[k] - f[j]
                    if i == j or k == j:
                        values.append(torch.zeros((), dtype=f.dtype))
                    else:
                        values.append(a @ b / (a.norm() * b.norm()))
        return torch.stack(values)

    def huber(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = (x - y).abs()
        return torch.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean()

    t_d, t_a = distances(teacher).detach(), angles(teacher).detach()
    expected = 25 * huber(distances(student), t_d) + 50 * huber(angles(student), t_a)
    (expected_grad,) = torch.autograd.grad(expected, student)
    labels = torch.zeros(5, dtype=torch.long)
    value = RelationalKD()(DistillationInputs(labels, student_features=student, teacher_features=teacher))
    value.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-9)
    torch.testing.assert_close(student.grad, expected_grad, rtol=1e-7, atol=1e-10)
    assert teacher.grad is None  # the teacher is a target, never trained


def test_crd_one_step_against_its_definition_written_out_and_its_memory_update():
    """One CRD step, re-derived: each image's positive is the other net's memory entry of that image
    (column 0), its K negatives entries drawn uniformly, P = exp(⟨m, v⟩/τ)/Z with Z = (mean score)·n
    fixed at the first step, NCE with noise K/n (RepDistiller's ``NCECriterion``); then the batch's
    entries move to normalise(μ·m + (1 − μ)·v)."""
    from transferlab.losses.distillation.base import DistillationInputs

    torch.manual_seed(0)
    crd = ContrastiveRepresentationDistillation(embed_dim=3, negatives=6, temperature=0.5, momentum=0.3)
    crd.build(4, 5, memory_size=20)
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(4, 4, generator=g), torch.randn(4, 5, generator=g)
    index = torch.tensor([3, 7, 11, 19])
    memory_s, memory_t = crd.memory_student.clone(), crd.memory_teacher.clone()
    v_s = F.normalize(crd.embed_student(student), dim=1).detach()
    v_t = F.normalize(crd.embed_teacher(teacher), dim=1).detach()
    torch.manual_seed(7)
    drawn = torch.randint(0, 20, (4, 7))
    drawn[:, 0] = index

    def nce(memory: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = torch.stack([torch.exp(memory[drawn[n]] @ v[n] / 0.5) for n in range(4)])
        p = scores / (scores.mean() * 20)
        noise = 6 / 20
        positive = torch.log(p[:, 0] / (p[:, 0] + noise + 1e-7)).sum()
        negative = torch.log(noise / (p[:, 1:] + noise + 1e-7)).sum()
        return -(positive + negative) / 4

    expected = nce(memory_t, v_s) + nce(memory_s, v_t)
    torch.manual_seed(7)
    value = crd(
        DistillationInputs(
            torch.zeros(4, dtype=torch.long),
            student_features=student,
            teacher_features=teacher,
            indices=index,
        )
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(
        crd.memory_student[index], F.normalize(0.3 * memory_s[index] + 0.7 * v_s, dim=1)
    )
    torch.testing.assert_close(
        crd.memory_teacher[index], F.normalize(0.3 * memory_t[index] + 0.7 * v_t, dim=1)
    )
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(crd.memory_student[untouched], memory_s[untouched])
