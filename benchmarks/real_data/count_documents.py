"""Records in each task's file vs documents scored, on data you point it at.

    .venv/bin/python benchmarks/real_data/count_documents.py \
        --ecominstruct-dir ../shared/data/ecominstruct --finben-dir ../shared/data/finben

Prints one line per task: documents scored, and the data source's own counts (held out
as a few-shot pool, capped, skipped) or the error that stopped the task. Also every
folder of --ecominstruct-dir through the generic `ecominstruct` task. Nothing runs a model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path


def main() -> None:
    """Count, per task, what load_task keeps of each file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecominstruct-dir", required=True)
    parser.add_argument("--finben-dir")
    parser.add_argument("--tasks", default="ecom_icl,ecom_sft,ecominstruct_public,flare")
    args = parser.parse_args()
    os.environ["ECOMHARNESS_OFFLINE"] = "1"

    import ecomharness.tasks.data as taskdata
    from ecomharness.tasks.index import build_task_manager, leaf_task_configs

    names = args.tasks.split(",")
    manager = build_task_manager(names)
    metadata = {"ecominstruct_dir": args.ecominstruct_dir}
    if args.finben_dir:
        metadata["finben_dir"] = args.finben_dir

    def run(label: str, **meta) -> None:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                data = taskdata.load_task(**meta)
        except Exception as exc:  # noqa: BLE001 - report and go on to the next task
            print(f"{label:<60} not loaded: {type(exc).__name__}: {str(exc)[:120]}")
            return
        source = taskdata.DATA_SOURCES[meta["ecom"]["task"]]
        print(f"{label:<60} {len(data['test']):>5} scored of {source['records_in_file']:>5} "
              f"(held out {source['held_out_fewshot']}, capped {source['capped']}, "
              f"skipped {source['skipped_records']})")

    for cfg in leaf_task_configs(manager, names):
        family = cfg["metadata"]["ecom"]["family"]
        if f"{family}_dir" in metadata:
            run(cfg["task"], ecom=cfg["metadata"]["ecom"], **metadata)
    generic = leaf_task_configs(manager, ["ecominstruct"])[0]["metadata"]["ecom"]
    for folder in sorted(Path(args.ecominstruct_dir).iterdir()):
        if (folder / "meta-info.json").is_file():
            run(f"ecominstruct dir={folder.name}", ecom=generic, dir=str(folder))


if __name__ == "__main__":
    main()
