"""Hooks the throughput benches (tools/bench_throughput.py, tools/gpu_acceptance.py) put on a
reader while it runs: seconds spent in a method, and host crossings inside ``read_plans``."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections import Counter


class Patched:
    """Sets ``owner.name`` to ``wrap(current)`` on enter and puts back exactly what was there
    (an instance attribute, a class attribute, or nothing: the inherited one) on exit."""

    _missing = object()

    def __init__(self, owner, name: str, wrap):
        self.owner, self.name, self.wrap = owner, name, wrap

    def __enter__(self):
        self.saved = vars(self.owner).get(self.name, self._missing)
        setattr(self.owner, self.name, self.wrap(getattr(self.owner, self.name)))
        return self

    def __exit__(self, *exc):
        if self.saved is self._missing:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self.saved)


class MethodClock(Patched):
    """Seconds spent in ``owner.name`` while entered."""

    def __init__(self, owner, name: str):
        self.seconds = 0.0

        def wrap(method):
            def clocked(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - start

            return clocked

        super().__init__(owner, name, wrap)


HOST_READS = ("tolist", "item", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class HostCrossings(contextlib.ExitStack):
    """Counts, while ``reader.read_plans`` runs on the thread that called it, the calls of
    ``upload`` and ``download`` (engine/reader.py's crossings by design) and every host read of a
    tensor outside ``download`` (tests/test_host_crossings.py's hook); on CUDA also the sync debug
    mode's warnings outside ``download``. A planner thread's reads are not counted."""

    def __init__(self, reader):
        super().__init__()
        self.reader, self.counts, self.inside = reader, Counter(), None

    def __enter__(self):
        import torch

        import headrank_ir.engine.reader as module

        super().__enter__()
        for name in HOST_READS:
            self.enter_context(Patched(torch.Tensor, name, lambda f, name=name: self._counted(name, f)))
        self.enter_context(Patched(module, "upload", lambda f: self._counted("upload", f)))
        self.enter_context(Patched(module, "download", self._alone))
        self.enter_context(Patched(self.reader, "read_plans", self._observed))
        return self

    def _counted(self, name, function):
        def counting(*args, **kwargs):
            if self.inside == threading.get_ident():
                self.counts[name] += 1
            return function(*args, **kwargs)

        return counting

    def _alone(self, download):
        def alone(tensors):
            self.counts["download"] += 1
            inside, self.inside = self.inside, None  # the one wait for the device, by design
            with cuda_sync_mode(self.reader.device, "default"):
                try:
                    return download(tensors)
                finally:
                    self.inside = inside

        return alone

    def _observed(self, read_plans):
        def observed(plans):
            self.inside = threading.get_ident()
            try:
                with warnings.catch_warnings(record=True) as caught, cuda_sync_mode(self.reader.device, "warn"):
                    warnings.simplefilter("always")
                    return read_plans(plans)
            finally:
                self.inside = None
                self.counts["cuda_sync_warnings"] += sum("synchroniz" in str(w.message) for w in caught)

        return observed

    def summary(self) -> dict:
        return {
            "syncs_per_group": syncs_per_group(self.counts),
            "groups_counted": self.counts["upload"],
            "downloads_counted": self.counts["download"],
            **(
                {"cuda_sync_warnings_per_group": per_group(self.counts["cuda_sync_warnings"], self.counts)}
                if self.reader.device.type == "cuda"
                else {}
            ),
        }


@contextlib.contextmanager
def cuda_sync_mode(device, mode: str):
    """``torch.cuda.set_sync_debug_mode(mode)`` for the block on a CUDA ``device``; else nothing."""
    import torch

    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def per_group(count: int, counts: Counter):
    """``count`` per group (per ``upload``); None where no group was read."""
    return round(count / counts["upload"], 3) if counts["upload"] else None


def syncs_per_group(counts: Counter):
    """Host reads of tensors (``HOST_READS``) per group, from ``HostCrossings.counts``."""
    return per_group(sum(counts[name] for name in HOST_READS), counts)
