"""Choosing torch's CPU thread count from the measured time of ordinary iterations
(shared by ``cs2dips`` and the ``ssr``/``ssrcu`` solvers).  Private module (no hooks)."""
from __future__ import annotations

import time


class ThreadChooser:
    """Picks 1 or all torch CPU threads from the measured time of two iterations.

    On the shared 2-core development machine a CS2DIPs step at 512² × 21 took 1.5 s on
    one thread and 10.5 s on two, and the PALM iterations of ``ssr`` ran 5× slower on two
    threads than on one (OpenMP threads spin-waiting on a preempted sibling); on an idle
    machine two threads are faster.  Iterations 1 and 2 (iteration 0 warms up) run with
    all threads and with one; the faster setting is kept from iteration 3 on.  The
    iterations are ordinary ones: nothing is spent on the measurement itself.  The caller
    restores the thread count afterwards (``maxrf_bench.torch_threads``).
    """

    def __init__(self):
        import torch

        self._torch = torch
        self.many = torch.get_num_threads()
        self.times: list[float] = []
        self.active = self.many > 1
        self._t0 = 0.0

    def before(self, it: int) -> None:
        if not self.active:
            return
        if it == 2:
            self._torch.set_num_threads(1)
        self._t0 = time.perf_counter()

    def after(self, it: int) -> None:
        if not self.active:
            return
        if it in (1, 2):
            self.times.append(time.perf_counter() - self._t0)
        if it == 2:
            self._torch.set_num_threads(1 if self.times[1] < self.times[0] else self.many)
            self.active = False
