"""Shared pytest settings: one CPU thread, so float sums are repeatable."""

import torch

torch.set_num_threads(1)
