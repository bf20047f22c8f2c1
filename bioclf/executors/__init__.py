"""Executors: what runs a suite's jobs. Each has the same shape, ``run(jobs) -> outcomes``
(bioclf.jobs: one ``Outcome`` per ``Job``, in job order), and each calls ``bioclf.jobs.run_job``
for a job, so skip, resume, claims and failure isolation are the same code everywhere.

- ``LocalExecutor`` (bioclf.executors.local): one job after the other in this process; under
  torchrun it is rank 0's side of a data-parallel suite, and ``follow`` is the other ranks'.
- ``RayExecutor`` (bioclf.executors.ray): each job a Ray task on a cluster.

Adding one: a class with ``run(jobs) -> list[Outcome]`` and a branch in ``bioclf.runner``.
"""
