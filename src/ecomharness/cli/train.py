"""Train (CPT or SFT) with HF Trainer and DeepSpeed; evaluate every saved checkpoint.

Single process: ``ecomharness train RECIPE``. Several processes or nodes: through the
DeepSpeed launcher, ``deepspeed --num_gpus N $(which ecomharness) train RECIPE`` (it
appends ``--local_rank``, which is accepted). Re-running after a crash resumes from the
last checkpoint; the ledger never evaluates a checkpoint twice.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "train"
HELP = "train with a recipe (CPT or SFT, DeepSpeed), evaluating checkpoints"
EPILOG = """\
examples:
  ecomharness train train/recipes/tiny_cpu.yaml --set data.path=runs/data/demo
  deepspeed --num_gpus 2 $(which ecomharness) train my_recipe.yaml
  ecomharness train my_recipe.yaml --set training.max_steps=100 --set eval.limit=50
  ecomharness train my_recipe.yaml --check       # validate only, nothing trained
outputs: RUN_DIR/checkpoint-*/, RUN_DIR/eval/ledger.jsonl, RUN_DIR/train_done.json
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness train``."""
    parser.add_argument("recipe", help="training recipe YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, e.g. training.max_steps=10 (repeatable)")
    parser.add_argument("--check", action="store_true",
                        help="validate the recipe (fields, model, tokenizer, data, DeepSpeed config, gate, "
                             "eval tasks) without training")


def run(args) -> int:
    """Run the recipe and print a summary line."""
    from ecomharness.train.recipe import load_recipe
    from ecomharness.train.run import run_training

    recipe = load_recipe(args.recipe, args.overrides)
    if args.check:
        from ecomharness.train.run import check_recipe

        for line in check_recipe(recipe):
            print(f"[train] {line}")
        print(f"[train] {args.recipe}: the recipe is valid")
        return EXIT_OK
    summary = run_training(recipe)
    print(f"[train] {summary['global_step']} steps; training {summary['train_seconds']:.1f}s, "
          f"evaluation {summary['eval_seconds']:.1f}s; ledger {recipe.run_dir / 'eval' / 'ledger.jsonl'}")
    return EXIT_OK
