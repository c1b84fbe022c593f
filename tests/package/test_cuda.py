"""The same code on a GPU: run when CUDA is present, skipped otherwise."""

import pytest
import torch

from rnn_course.bptt import bptt, layer_forward_with_cache
from rnn_course.rnn import ScratchRNN
from rnn_course.torch_bridge import scratch_to_torch_rnn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_scratch_on_cuda_equals_cpu_and_nn_rnn_on_cuda():
    torch.manual_seed(0)
    cpu_model = ScratchRNN(6, 3, 2, batch_first=True, dtype=torch.float64)
    x = torch.randn(4, 5, 6, dtype=torch.float64)
    expected_output, expected_h_n = cpu_model(x)
    cuda_model = cpu_model.to("cuda")
    output, h_n = cuda_model(x.cuda())
    assert output.device.type == "cuda"
    torch.testing.assert_close(output.cpu(), expected_output, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n.cpu(), expected_h_n, rtol=0, atol=1e-12)
    torch_output, _ = scratch_to_torch_rnn(cuda_model)(x.cuda())
    torch.testing.assert_close(torch_output.cpu(), expected_output, rtol=0, atol=1e-10)


def test_bptt_on_cuda_equals_cpu():
    generator = torch.Generator().manual_seed(1)
    tensors = [
        torch.randn(*shape, generator=generator, dtype=torch.float64)
        for shape in [(6, 2, 3), (2, 4), (4, 3), (4, 4), (4,), (6, 2, 4)]
    ]
    x, h0, W_x, W_h, b, grad_output = tensors
    _, cache = layer_forward_with_cache(x, h0, W_x, W_h, b)
    expected = bptt(cache, grad_output)
    _, cuda_cache = layer_forward_with_cache(*[t.cuda() for t in (x, h0, W_x, W_h, b)])
    grads = bptt(cuda_cache, grad_output.cuda())
    for name in ("W_x", "W_h", "b", "x", "h0"):
        torch.testing.assert_close(
            getattr(grads, name).cpu(), getattr(expected, name), rtol=0, atol=1e-10
        )


def test_float32_on_cuda_within_calibrated_tolerance():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(2)
    model = ScratchRNN(8, 16, 2)
    x = torch.randn(20, 3, 8)
    expected, _ = model(x)
    output, _ = model.to("cuda")(x.cuda())
    torch.testing.assert_close(output.cpu(), expected, rtol=1e-5, atol=1e-5)
