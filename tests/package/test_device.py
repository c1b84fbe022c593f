"""Device selection, seeds and deterministic settings."""

import pytest
import torch

from rnn_course.device import (
    describe_device,
    get_device,
    make_deterministic,
    seed_everything,
)


def test_cpu_is_always_available_and_default_is_a_real_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device().type in ("cpu", "cuda", "mps")
    assert describe_device(torch.device("cpu")).startswith("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_missing_cuda_is_an_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda")


def test_bad_device_names():
    with pytest.raises((ValueError, RuntimeError)):
        get_device("tpu")


def test_seeding_repeats_random_numbers():
    seed_everything(5)
    a = torch.randn(3)
    seed_everything(5)
    assert torch.equal(a, torch.randn(3))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        seed_everything(-1)


def test_make_deterministic_fixes_threads_and_seed():
    previous = torch.get_num_threads()
    try:
        make_deterministic(seed=3, threads=1)
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        a = torch.randn(2)
        make_deterministic(seed=3, threads=1)
        assert torch.equal(a, torch.randn(2))
        with pytest.raises(ValueError, match="threads must be a positive int"):
            make_deterministic(threads=0)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(previous)
