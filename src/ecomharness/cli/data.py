"""Build a packed, tokenized CPT training set from raw corpora, as a recipe says.

The recipe names the sources (domain or general, language, format, linking key,
Jinja template), the mixer (EcomGPT-CT ``graph`` or the ``separate`` baseline), the
token ratios and the tokenizer; see docs/data.md.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "data"
HELP = "build a packed CPT dataset from raw corpora (data build RECIPE.yaml)"
EPILOG = """\
examples:
  ecomharness data build train/data/mixcpt_raw.yaml        # after pointing its paths at your corpora
  ecomharness data build my_recipe.yaml --force        # rebuild an existing output
  ecomharness data build my_recipe.yaml --check        # validate only: fields, files, templates, tokenizer
  ecomharness data build my_recipe.yaml --for train.yaml   # decontaminate against train.yaml's evaluation tasks
  ecomharness data build my_recipe.yaml --engine ray   # the same build on Ray Data (pip install 'ecomharness[ray]')
  ecomharness data build my_recipe.yaml --engine ray --address auto --blocks 256   # on a running cluster
output: OUTPUT/dataset (datasets.load_from_disk), OUTPUT/stats.json, OUTPUT/stats.md
"""


def add_arguments(parser) -> None:
    """Subcommands of ``ecomharness data``."""
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    build = sub.add_parser("build", help="build the dataset a recipe describes")
    build.add_argument("recipe", help="data recipe YAML")
    build.add_argument("--force", action="store_true", help="replace an existing output directory")
    build.add_argument("--check", action="store_true",
                       help="validate the recipe (fields, files, templates, tokenizer, mixer) without building")
    build.add_argument("--for", dest="for_training", metavar="TRAIN.yaml", default=None,
                       help="the training recipe this build is for: decontaminate against its evaluation "
                            "profiles' tasks unless the data recipe names its own")
    build.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: Ray Data stages, same output (docs/data.md)")
    build.add_argument("--address", default=None,
                       help="ray engine: the cluster to join (auto, or HOST:PORT; default: RAY_ADDRESS, else "
                            "start Ray on this machine)")
    build.add_argument("--blocks", type=int, default=None,
                       help="ray engine: read pieces to cut the sources into (default: about 128 MiB each)")
    build.add_argument("--scorer-actors", type=int, default=None,
                       help="ray engine: selection/curriculum scorer actors (default: one per GPU, else one)")
    build.add_argument("--stall-timeout", type=float, default=None,
                       help="ray engine: seconds the scorer actors may take to start before the build stops "
                            "with an error (default 600)")


def run(args) -> int:
    """Run ``data build``: print each stage's time and where the report is."""
    from pathlib import Path

    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe
    from ecomharness.errors import UserError
    from ecomharness.util import sole_writer

    recipe = load_recipe(args.recipe)
    if args.for_training:
        recipe = for_training(recipe, args.for_training)
    if args.check:
        from ecomharness.data.build import check_recipe

        for line in check_recipe(recipe):
            print(f"[data] {line}")
        print(f"[data] {args.recipe}: the recipe is valid")
        return EXIT_OK
    ray_options = {"address": args.address, "blocks": args.blocks, "scorer_actors": args.scorer_actors,
                   "stall_timeout": args.stall_timeout}
    if args.engine != "ray" and any(v is not None for v in ray_options.values()):
        raise UserError("--address, --blocks, --scorer-actors and --stall-timeout are options of --engine ray")
    output = Path(recipe.output)
    # One build per output: a second would otherwise replace the first's files silently.
    with sole_writer(output.parent / f".{output.name}.lock", f"the build output {output}"):
        engine = None
        if args.engine == "ray":
            from ecomharness.data.engine_ray import RayEngine

            engine = RayEngine(**{k: v for k, v in ray_options.items() if v is not None})
        stats = build_dataset(recipe, force=args.force, engine=engine)
    r = stats["ratios"]
    g2d = r["general_to_domain_achieved"]
    print(f"[data] general:domain achieved {'n/a' if g2d is None else f'{g2d:.3f}'} "
          f"(target {r['general_to_domain_target']}); general languages "
          + ", ".join(f"{k} {v:.3f}" for k, v in r["general_language_shares_achieved"].items()))
    print(f"[data] wrote {recipe.output}/dataset, stats.json, stats.md "
          f"({stats['bad_records']} bad records skipped)")
    return EXIT_OK


def for_training(recipe, train_path: str):
    """The data recipe with its decontamination tasks taken from a training recipe's
    evaluation profiles, where it names none (a ``decontaminate`` block without
    ``tasks``, or none at all: then the defaults, dropping what is found)."""
    import dataclasses

    from ecomharness.data.contamination import ContaminationSpec, tasks_for_training
    from ecomharness.errors import UserError
    from ecomharness.train.recipe import load_recipe as load_train_recipe

    train = load_train_recipe(train_path)
    spec = recipe.decontaminate
    if spec is not None and spec.tasks:
        print(f"[data] --for {train_path}: the data recipe names its decontamination tasks "
              f"({', '.join(spec.tasks)}); kept")
        return recipe
    tasks = tasks_for_training(train)
    if not tasks:
        raise UserError(f"--for {train_path}: the training recipe evaluates no task besides held-out bits per "
                        "byte; name the decontamination tasks in the data recipe")
    print(f"[data] --for {train_path}: decontaminating against {', '.join(tasks)}")
    spec = dataclasses.replace(spec or ContaminationSpec(tasks=()), tasks=tuple(tasks))
    return dataclasses.replace(recipe, decontaminate=spec)
