"""The fused eager arithmetic (bintut.fused_quant) computes what the composed expression of bintut.quant computes:
the same values bit for bit, the same straight-through gradients up to float rounding; and converted models run
in any dtype and on empty batches (issue 24, kind 6)."""

import pytest
import torch
from torch import nn

from bintut.fused_quant import BLOCK, _at_limit, abs_max, int8_codes, memory_order
from bintut.quant import GradualQuantizer, Int8Quantizer, QuantConfig, SignQuantizer, binarize_, set_controls

CONTROLS = [(0.0, 0.0), (0.3, 0.6), (0.5, 0.2), (1.0, 0.4), (0.0, 0.7), (1.0, 1.0)]


def _both_ways(q, x, seed):
    """(output, grads) of the quantizer's forward (fused in eager mode) and of the composed expression, with the
    same random stream and the same gradient of the output."""
    results = []
    for forward in (q.forward, lambda t: GradualQuantizer.forward(q, t.float())):
        state = {k: v.clone() for k, v in q.state_dict().items()}
        torch.manual_seed(seed)
        x.grad = None
        params = [p for p in q.parameters()]
        for p in params:
            p.grad = None
        out = forward(x)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        results.append((out.detach(), x.grad.clone(), [p.grad.clone() for p in params], q.state_dict()))
        q.load_state_dict(state)
    return results


@pytest.mark.parametrize("p, r", CONTROLS)
@pytest.mark.parametrize("training", [True, False])
def test_activation_quantizer_fused_equals_composed(p, r, training):
    q = Int8Quantizer()
    q.train(training)
    q.set_controls(p, r)
    q.running_max.fill_(2.5)
    q.initialized.fill_(True)
    torch.manual_seed(0)
    x = (torch.randn(4, 8, 5, 5) * 1.5).requires_grad_()
    (fused, g_fused, _, s_fused), (composed, g_composed, _, s_composed) = _both_ways(q, x, seed=1)
    assert torch.equal(fused, composed)  # bit for bit, the mask draw included
    torch.testing.assert_close(g_fused, g_composed, rtol=0, atol=1e-6)
    assert torch.equal(s_fused["running_max"], s_composed["running_max"])


@pytest.mark.parametrize("p, r", CONTROLS)
@pytest.mark.parametrize("layout", ["channels_last", "strided", "clamped"])
def test_activation_gradients_at_the_clamp_in_any_memory_layout(p, r, layout):
    """The fused backward rescales the clamped entries by their offsets in x's memory: channels_last inputs, a
    strided view (copied dense first) and a batch where a third of the codes sit at the clamp agree too."""
    q = Int8Quantizer()
    q.set_controls(p, r)
    q.running_max.fill_(0.5 if layout == "clamped" else 2.5)
    q.initialized.fill_(True)
    q.momentum = 0.0  # keep the running max, so that the clamped share stays as set
    torch.manual_seed(3)
    base = torch.randn(4, 6, 5, 10) * 1.5
    if layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = base[:, :, :, ::2]
    else:
        x = base
    x = x.detach().requires_grad_()
    (fused, g_fused, _, _), (composed, g_composed, _, _) = _both_ways(q, x, seed=4)
    assert torch.equal(fused, composed)
    torch.testing.assert_close(g_fused, g_composed, rtol=0, atol=1e-6)
    assert (g_composed == 0).any() or r < 1 or p < 1  # clamped entries exist and get no gradient at p = r = 1


@pytest.mark.parametrize("n", [0, 1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17])
def test_clamped_positions_found_by_blocks_equal_a_full_scan(n):
    torch.manual_seed(n)
    limit = torch.tensor(127.0)
    for share in (0.0, 0.001, 0.5, 1.0):
        flat = torch.randint(-126, 127, (n,)).float()
        flat[torch.rand(n) < share] = 127.0
        flat[torch.rand(n) < share / 2] = -127.0
        assert torch.equal(_at_limit(flat, limit), (flat.abs() >= limit).nonzero().squeeze(1))


def test_memory_order_reads_a_channels_last_tensor_as_stored():
    x = torch.arange(24.0).view(1, 2, 3, 4).contiguous(memory_format=torch.channels_last)
    assert torch.equal(memory_order(x), x.permute(0, 2, 3, 1).reshape(-1))


@pytest.mark.parametrize("p, r", CONTROLS)
def test_weight_quantizer_fused_equals_composed(p, r):
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    q = SignQuantizer(w.detach())
    q.set_controls(p, r)
    (fused, g_fused, (gs_fused,), _), (composed, g_composed, (gs_composed,), _) = _both_ways(q, w, seed=2)
    assert torch.equal(fused, composed)
    torch.testing.assert_close(g_fused, g_composed, rtol=0, atol=1e-6)
    torch.testing.assert_close(gs_fused, gs_composed, rtol=0, atol=1e-5)


def test_codes_at_the_clamp_get_no_gradient_as_torch_clamp_gives_none():
    step = torch.tensor(1.0)
    x = torch.tensor([126.4, 126.6, 127.0, 300.0, -126.6, -126.4, 0.2])
    values, at_clamp = int8_codes(x, step)
    assert values.tolist() == [126.0, 127.0, 127.0, 127.0, -127.0, -126.0, 0.0]
    assert at_clamp.tolist() == [1, 2, 3, 4]
    passes = torch.ones(7, dtype=torch.bool).index_fill_(0, at_clamp, False)
    # the composed expression agrees: its gradient is 0 exactly where the code is +-127
    q = Int8Quantizer()
    q.eval()
    q.running_max.fill_(127.0)
    q.initialized.fill_(True)
    xs = x.clone().requires_grad_()
    q.hard(xs).sum().backward()
    assert xs.grad.tolist() == [1.0 if ok else 0.0 for ok in passes.tolist()]


def test_abs_max_is_max_abs_and_zero_when_empty():
    x = torch.tensor([[-3.5, 2.0], [1.0, 0.5]])
    assert abs_max(x).item() == 3.5 and abs_max(x).dtype == torch.float32
    assert abs_max(torch.empty(0, 3)).item() == 0.0
    assert torch.isnan(abs_max(torch.tensor([1.0, float("nan")])))


def _small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_a_converted_model_cast_to_another_dtype_runs_and_at_zero_controls_is_the_original(dtype):
    x = torch.randn(2, 3, 6, 6, dtype=dtype)
    plain = _small_net().to(dtype).eval()
    converted = binarize_(_small_net()).to(dtype).eval()
    with torch.no_grad():
        out = converted(x)
        assert out.dtype == dtype
        assert torch.equal(out, plain(x))  # p = bin_ratio = 0: the original function, as binarize_ promises
        set_controls(converted, 1.0, 1.0)
        assert converted(x).dtype == dtype and torch.isfinite(converted(x).float()).all()


def test_an_empty_batch_passes_through_and_moves_no_running_max():
    net = binarize_(_small_net(), QuantConfig())
    set_controls(net, 0.5, 0.5)
    net.train()
    net(torch.randn(2, 3, 6, 6))
    maxima = [q.running_max.clone() for q in net.modules() if isinstance(q, Int8Quantizer)]
    out = net(torch.empty(0, 3, 6, 6))
    assert out.shape == (0, 5)
    assert all(torch.equal(m, q.running_max) for m, q in zip(
        maxima, [q for q in net.modules() if isinstance(q, Int8Quantizer)], strict=True))
    net.eval()
    assert net(torch.empty(0, 3, 6, 6)).shape == (0, 5)


def test_the_cpu_step_benchmark_runs_and_prints_its_table():
    """benchmarks/cpu_step.py at tiny sizes: one row per path, ratios against the plain step, machine and load."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "cpu_step.py"
    out = subprocess.run([sys.executable, str(script), "--batch", "2", "--rounds", "1", "--controls", "0.5",
                          "--composed"], capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| plain (no quantizers)", "| binarizing, p = bin_ratio = 0.5",
        "| binarizing, p = bin_ratio = 0.5, composed (before)"]
    assert rows[0].endswith("| 1.00x | 1.00x |") and "load average" in out


def test_at_zero_controls_the_weight_is_kept_and_its_scale_still_gets_a_zero_gradient():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    q = SignQuantizer(w.detach())
    out = q(w)
    assert torch.equal(out, w)
    out.backward(torch.ones_like(out))
    assert torch.equal(w.grad, torch.ones_like(w)) and torch.equal(q.scale.grad, torch.zeros_like(q.scale))


def test_binary_weights_take_plus_one_at_zero_and_minus_zero_as_w_ge_0_does():
    w = torch.tensor([[-0.0, 0.0, -1e-30, 1e-30, -2.0, 3.0]], requires_grad=True)
    q = SignQuantizer(w.detach())
    q.set_controls(1.0, 1.0)
    signs = (q(w) / q.scale).detach()
    assert signs.tolist() == [[1.0, 1.0, -1.0, 1.0, -1.0, 1.0]]
