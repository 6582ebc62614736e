"""The Dask backend: `--dask ADDRESS` submits the runs to an existing `dask.distributed` scheduler
(`dask scheduler` + `dask worker` by hand, dask-jobqueue on Slurm, Kubernetes), `--dask local` starts a
LocalCluster (one process per core, one thread each). Results stream back as they complete
(`as_completed`) into the same driver: journal, retry and resume as on the local pool.

A worker that dies mid-run: the scheduler marks the task failed (KilledWorker) and the driver retries it
once. The LocalCluster is started with `allowed-failures = 0`, so the first death reaches the driver; an
existing scheduler may first reschedule the task itself under its own `distributed.scheduler.allowed-
failures` (default 3), which the journal's `attempts` does not see.
"""

from __future__ import annotations

import threading
from typing import Any

from .task import Task, run_task


class DaskUnavailable(RuntimeError):
    """dask.distributed is not installed, or the scheduler cannot be reached (the message says which)."""


def dask_run(task: Task) -> dict[str, Any]:
    """The function a Dask worker runs: one torch thread, the task, its row fields."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return run_task(task)


def connect(address: str, workers: int, timeout_s: float = 20.0):
    """A Client on `address` ('local' starts a LocalCluster of `workers` processes)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise DaskUnavailable('--dask needs dask.distributed: pip install "basintui[dask]"') from None
    if address == "local":
        dask.config.set({"distributed.scheduler.allowed-failures": 0})
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=50)
        return Client(cluster), cluster
    try:
        return Client(address, timeout=timeout_s), None
    except (OSError, TimeoutError) as exc:
        raise DaskUnavailable(f"--dask {address}: cannot reach the scheduler ({exc})") from None


class DaskBackend:
    def __init__(self, client, cluster=None) -> None:
        from distributed import as_completed

        self.client, self.cluster = client, cluster
        self.futures: dict[str, tuple[Task, Any]] = {}
        self.done = as_completed()
        self._lock = threading.Lock()

    def capacity(self) -> int:
        try:
            return max(sum(self.client.nthreads().values()), 1)
        except Exception:  # noqa: BLE001 - a scheduler that is going away: keep one run in flight
            return 1

    def submit(self, task: Task) -> None:
        fut = self.client.submit(dask_run, task, pure=False)
        self.futures[fut.key] = (task, fut)
        self.done.add(fut)

    def _result(self, fut) -> dict[str, Any]:
        if fut.status == "finished":
            return fut.result()
        if fut.status == "cancelled":
            return {"outcome": "cancelled", "error": "cancelled"}
        exc = fut.exception()
        kind = type(exc).__name__
        why = "its worker died" if kind == "KilledWorker" else f"{kind}: {str(exc).strip()[:300]}"
        return {"outcome": "retry", "error": f"the run failed on the cluster ({why})"}

    def wait(self, seconds: float) -> list[tuple[Task, dict[str, Any]]]:
        from distributed import TimeoutError as DaskTimeout

        out = []
        if self.done.is_empty():
            import time

            time.sleep(min(seconds, 0.05))
            return out
        try:
            batch = self.done.next_batch(block=False) or []
            if not batch:
                import time

                time.sleep(seconds)
                batch = self.done.next_batch(block=False) or []
        except (DaskTimeout, StopIteration):
            batch = []
        for fut in batch:
            task, _ = self.futures.pop(fut.key, (None, None))
            if task is not None:
                out.append((task, self._result(fut)))
        return out

    def cancel(self) -> tuple[list[tuple[Task, dict[str, Any]]], list[Task]]:
        came_back = self.wait(0)
        lost = [task for task, _ in self.futures.values()]
        self.client.cancel([fut for _, fut in self.futures.values()])
        self.futures.clear()
        return came_back, lost

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
