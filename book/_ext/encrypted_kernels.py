"""Sphinx extension: the kernels that execute the chapters talk to the build over
CurveZMQ.

myst-nb executes each notebook through nbclient, whose kernel manager provisions no
transport keys by default (``transport_encryption = "disabled"``), so every kernel ran
over plain TCP and said so on stderr ("Kernel is running over TCP without encryption"),
once per chapter. myst-nb passes no configuration to that kernel manager, so this
extension changes the default before any notebook runs: with "auto" the manager
provisions Curve keys for kernels whose kernel spec declares support (ipykernel's does),
and the warning no longer appears because its cause is gone.
"""

import zmq
from jupyter_client.manager import KernelManager


def use_curve_keys():
    """Make "auto" the kernel managers' default transport encryption in this process.

    Also called by parallel_execution.py in each of its worker processes.
    """
    if zmq.has(
        "curve"
    ):  # libzmq built with libsodium; "auto" would be refused otherwise
        KernelManager.class_traits()["transport_encryption"].default_value = "auto"


def setup(app):
    use_curve_keys()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
