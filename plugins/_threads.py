"""Choosing torch's CPU thread count from the measured time of ordinary iterations
(the ``ssr``/``ssrcu`` solvers).  Private module (no hooks).

Only for a computation whose output does not depend on the thread count: ``ssr`` and
``ssrcu`` give the same bits on 1 and 2 threads (their ``fast`` preset on a 128² × 8 toy
scan).  ``cs2dips`` used it too until its output turned out to depend on the thread count
(oneDNN and MKL sum in another order; the fit amplifies it), which made a seeded cell's maps
depend on the machine's load; it now runs on the threads it is given."""
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
