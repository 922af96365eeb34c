"""A pipeline and a sweep written in Python with the SDK's spec builder (docs/sdk.md).

    corral up --pool examples/pool.yaml          # from the repo root, in another terminal
    python examples/sdk_pipeline.py              # queue research-nlp; --queue to choose another

Each step is checked as it is written, by the model the server validates with: the typo below
is caught here, before any request. The pipeline is submitted all or nothing, as `corral
submit FILE` submits a file: `after(prepare)` becomes prepare's new id. The script waits for
the report to end and prints each workload's state (tests/sdk/test_builder_live.py runs it).
"""

from __future__ import annotations

import argparse

from corral.sdk import Client
from corral.sdk.builder import Pipeline, SpecError, Workload, job, sweep


def build(queue: str) -> tuple[Pipeline, Workload]:
    prepare = (job("prepare", queue=queue)
               .run("python", "-c", "print('tokenising the corpus')")
               .resources(cpu=0.5, memory="256MiB"))
    train = (job("train", queue=queue)
             .run("python", "-c", "print('training on', __import__('os').environ.get("
                  "'CUDA_VISIBLE_DEVICES'))")
             .resources(gpus=1, cpu=0.5, memory="512MiB")
             .restart(on=["node_failure", "preemption"], exit_codes=[75], grace="60s")
             .after(prepare))
    report = (job("report", queue=queue)
              .shell("echo train ended; echo writing the report")
              .resources(cpu=0.1, memory="64MiB")
              .after(train, when="ended"))
    lr = (sweep("lr-sweep", queue=queue, grid={"lr": [0.1, 0.01], "batch_size": [32, 64]},
                parallel=2)
          .run("python", "-c", "import os; print(os.environ['CORRAL_PARAMS'])")
          .resources(gpus=0.25, cpu=0.5, memory="256MiB"))
    return Pipeline(prepare, train, report), lr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queue", default="research-nlp")
    queue = parser.parse_args().queue

    try:  # a mistake is named with its field and the fix, before anything is sent
        job("typo", queue=queue).set(gpu=1)
    except SpecError as e:
        print(f"caught before submitting: {e}")

    pipeline, lr = build(queue)
    with Client.from_env() as c:
        for step in pipeline.dry_run(c):
            print(f"dry run {step.name}: {step.dry_run.outcome if step.dry_run else step.problems}")
        submitted = pipeline.submit(c)
        for name, sub in zip(("prepare", "train", "report"), submitted, strict=True):
            print(f"submitted {name}: {sub.workloads[0].id}")
        tasks = lr.submit(c)
        print(f"submitted lr-sweep: {len(tasks.workloads)} tasks in group {tasks.group_id}")
        ended = c.wait(submitted[-1].workloads[0].id, timeout_s=300)
        for sub in submitted:
            print(f"{sub.workloads[0].id}: {c.get(sub.workloads[0].id).state}")
        print(f"report ended: {ended.state}")


if __name__ == "__main__":
    main()
