"""Execution backends for independent units of work (generation episodes, evaluation runs).

``local`` runs them in this process (or a local process pool, see ``metaal.generate``); ``ray``
runs each unit as a Ray task on an existing cluster (``address="auto"`` or ``"HOST:PORT"``) or on
a local Ray instance started for the command.  Everything Ray-specific lives here and Ray is
imported only when the ray backend is used: it is an optional extra (``pip install 'metaal[ray]'``).

Results are pure functions of their inputs (seeds), so the backend changes where and when a unit
runs, never what it computes.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from metaal.errors import MetaalError

BACKENDS = ("local", "ray")
RAY_HINT = "--backend ray needs Ray: pip install 'metaal[ray]'"


def local_pool(workers: int):
    """The one local process pool, beside Ray: generate's shard writers and transfer-eval's (task, seed) groups.
    Spawned processes, because torch and fork do not mix."""
    import concurrent.futures as cf
    import multiprocessing as mp

    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))


def check_backend_options(backend: str, address: str | None = None, gpus: float = 0.0,
                          gpus_option: str = "--gpus-per-episode") -> None:
    """One-line errors for options that do not go together."""
    if backend not in BACKENDS:
        raise MetaalError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if gpus is None or not math.isfinite(gpus) or gpus < 0:
        raise MetaalError(f"{gpus_option} must be 0 or more, got {gpus}")
    if backend != "ray":
        if address:
            raise MetaalError("--address is an option of --backend ray")
        if gpus:
            raise MetaalError(f"{gpus_option} is an option of --backend ray (the local backend uses --device)")
    elif address is not None and not str(address).strip():
        raise MetaalError("--address must be 'auto' or HOST:PORT of a running Ray cluster")


def check_ray_device(device: str, gpus: float, gpus_option: str = "--gpus-per-episode") -> None:
    """Check --device where the driver may not be the machine that runs the work (no CUDA check here)."""
    import torch

    try:
        dev = torch.device(device) if device != "auto" else None
    except RuntimeError:
        raise MetaalError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
    if dev is not None and dev.type not in ("cpu", "cuda"):
        raise MetaalError(f"unsupported device '{device}' (use auto, cpu, cuda or cuda:N)")
    if dev is not None and dev.type == "cuda" and not gpus:
        raise MetaalError(f"--device {device} with --backend ray needs {gpus_option} > 0 "
                          "(Ray gives a task a GPU only when it asks for one)")


def import_ray():
    try:
        import ray
    except ImportError:
        raise MetaalError(RAY_HINT) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray, initialised: reuse an initialised Ray, connect to ``address``, or start a local instance.

    Shuts down only what it started.  ``num_cpus`` sizes a local instance (None: every core).
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address and address != "auto":
            _check_reachable(address)  # Ray itself retries an unreachable address for many minutes
        kwargs = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": True}
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                # "local": a fresh instance even if some other Ray cluster runs on this machine.  Ctrl-C
                # while it starts would orphan some of its processes: it waits until the instance is up.
                with _sigint_deferred() as interrupted:
                    ray.init(address="local", num_cpus=num_cpus, **kwargs)
                if interrupted:
                    ray.shutdown()
                    raise KeyboardInterrupt
        except ConnectionError as exc:
            where = ("no running Ray cluster found (on this machine or in $RAY_ADDRESS)" if address == "auto"
                     else f"cannot connect to Ray: {exc}")
            raise MetaalError(f"--address {address}: {where}; start one with `ray start --head` "
                              "or leave out --address for a local Ray instance") from None
        except ValueError as exc:  # e.g. a malformed address
            raise MetaalError(f"--address {address}: {exc}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _sigint_deferred():
    """Hold SIGINT back during the block (main thread only); the yielded list says whether one came."""
    import signal
    import threading

    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    import socket

    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    try:
        port = int(port)
    except ValueError:
        port = None
    if not host or port is None:
        raise MetaalError(f"--address {address}: expected auto or HOST:PORT of a running Ray cluster")
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            pass
    except OSError as exc:
        raise MetaalError(f"--address {address}: cannot reach a Ray cluster there ({exc.strerror or exc}); "
                          "start one with `ray start --head` or leave out --address for a local Ray instance") from None


def ray_capacity(ray, num_cpus: float, num_gpus: float) -> int:
    """How many tasks of this size the cluster can run at once (0: none fits now)."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 0) // num_cpus) if num_cpus > 0 else 1 << 30
    if num_gpus > 0:
        n = min(n, int(res.get("GPU", 0) // num_gpus + 1e-9))
    return n


def _call(fn, args):
    """The body of every Ray task: a user error comes back as a value, not as a wrapped traceback."""
    try:
        return "ok", fn(*args)
    except MetaalError as exc:
        return "error", str(exc)


def ray_map(
    fn: Callable,
    items: Sequence[tuple],
    *,
    num_cpus: float = 1,
    num_gpus: float = 0.0,
    lanes: int | None = None,
) -> Iterator[tuple[int, object]]:
    """Run ``fn(*item)`` as Ray tasks (Ray must be initialised); yield ``(index, result)`` as they finish.

    ``lanes``: at most this many tasks in flight, and each task gets the number of a lane that no
    other running task holds as an extra last argument (``fn(*item, lane)``), so that a lane can
    own a resource such as a store shard (one writer at a time).  None: everything at once, no lane.
    A ``MetaalError`` raised by a task is raised here with the same message; tasks still in flight
    are cancelled when the caller stops early or anything fails.
    """
    ray = import_ray()
    remote = ray.remote(_call).options(num_cpus=num_cpus, num_gpus=num_gpus)
    pending = deque(enumerate(items))
    free = list(range(lanes)) if lanes else []  # a heap: the lowest free lane goes first
    inflight: dict = {}
    try:
        while pending or inflight:
            while pending and (free or not lanes):
                i, args = pending.popleft()
                lane = heapq.heappop(free) if lanes else None
                ref = remote.remote(fn, (*args, lane) if lanes else tuple(args))
                inflight[ref] = (i, lane)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                i, lane = inflight.pop(ref)
                status, value = ray.get(ref)
                if lanes:
                    heapq.heappush(free, lane)
                if status == "error":
                    raise MetaalError(value)
                yield i, value
    finally:
        for ref in inflight:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
