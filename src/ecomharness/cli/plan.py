"""Plan the general:domain mixture before the big run: sweep a proxy, fit the D-CPT law, recommend a share.

``plan run`` trains a small grid of domain shares (each save one token budget) from
data tokenized once; ``plan fit`` fits the law to general and domain held-out loss;
``plan predict`` reads it at any share, budget and size; ``plan recommend`` gives the
critical mixture ratio: the domain share with the lowest domain loss whose general
loss stays within a tolerance. See docs/planning.md.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_INTERNAL, EXIT_OK

NAME = "plan"
HELP = "plan the mixture: plan run | fit | predict | recommend (docs/planning.md)"
EPILOG = """\
examples:
  ecomharness plan run train/plans/shop.yaml                 # train the grid here (resumes after a kill)
  ecomharness plan run train/plans/shop.yaml --print-commands   # one `ecomharness train` per point, for Slurm
  ecomharness plan fit runs/plan/shop --output fit.json       # or a JSON Lines file of observations
  ecomharness plan predict fit.json --domain-share 0.3 --tokens 2e9 --json
  ecomharness plan recommend fit.json --tokens 2e9 --tolerance 0.01 --json
"""


def add_arguments(parser) -> None:
    """Subcommands of ``ecomharness plan``."""
    sub = parser.add_subparsers(dest="plan_command", metavar="SUBCOMMAND", required=True)
    run = sub.add_parser("run", help="build the data once and train every grid point")
    run.add_argument("plan", help="plan YAML")
    run.add_argument("--print-commands", action="store_true",
                     help="prepare data and point recipes, then print one training command per unfinished point "
                          "instead of training")
    fit = sub.add_parser("fit", help="fit the law to a plan directory or a JSON Lines file of observations")
    fit.add_argument("observations", help="plan directory, or JSON Lines (model_params, tokens, domain_share, "
                                          "general_loss, domain_loss)")
    fit.add_argument("--output", default=None, help="where to write the fit (default: OBSERVATIONS/fit.json for a "
                                                    "plan directory, else beside the file)")
    fit.add_argument("--starts", type=int, default=8, help="seeded L-BFGS starts per law (default 8)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--min-tokens", type=float, default=0.0,
                     help="leave out observations under this many tokens (a run's first budgets, while the "
                          "re-warmed learning rate still disturbs the loss); counted in the fit")
    predict = sub.add_parser("predict", help="predicted general and domain loss at one point")
    predict.add_argument("fit", help="a `plan fit` output")
    predict.add_argument("--domain-share", type=float, required=True)
    predict.add_argument("--tokens", type=float, required=True)
    predict.add_argument("--model-params", type=float, default=None)
    predict.add_argument("--json", action="store_true")
    recommend = sub.add_parser("recommend", help="the critical mixture ratio at a budget, with a bootstrap interval")
    recommend.add_argument("fit", help="a `plan fit` output")
    recommend.add_argument("--tokens", type=float, required=True)
    recommend.add_argument("--tolerance", type=float, required=True,
                           help="relative rise of general loss allowed over its value at the smallest share measured "
                                "(0.01: 1%%)")
    recommend.add_argument("--model-params", type=float, default=None)
    recommend.add_argument("--bootstrap", type=int, default=200, help="resamples for the interval (default 200)")
    recommend.add_argument("--seed", type=int, default=0)
    recommend.add_argument("--out", default=None, help="folder for curves.png and table.md (default: beside FIT)")
    recommend.add_argument("--json", action="store_true")


def run(args) -> int:
    """Dispatch to the subcommand."""
    return {"run": _run, "fit": _fit, "predict": _predict, "recommend": _recommend}[args.plan_command](args)


def _run(args) -> int:
    from ecomharness.plan.run import run_plan
    from ecomharness.plan.spec import load_plan

    plan = load_plan(args.plan)
    summary = run_plan(plan, print_commands=args.print_commands)
    if summary["failed"]:
        print(f"[plan] {len(summary['failed'])} point(s) failed: {', '.join(summary['failed'])}")
        return EXIT_INTERNAL
    if not args.print_commands:
        print(f"[plan] next: ecomharness plan fit {plan.output}")
    return EXIT_OK


def _read_json(path: str, what: str):
    import json
    from pathlib import Path

    from ecomharness.errors import UserError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not a readable {what} ({exc})") from exc


def _fit(args) -> int:
    from pathlib import Path

    from ecomharness.errors import UserError
    from ecomharness.plan.fit import fit_observations
    from ecomharness.plan.observations import read_observations
    from ecomharness.util import write_json_atomic

    if args.starts < 1:
        raise UserError(f"--starts: expected at least 1, got {args.starts}")
    source = Path(args.observations)
    observations = read_observations(source)
    output = Path(args.output) if args.output else (source / "fit.json" if source.is_dir()
                                                     else source.with_name(source.stem + ".fit.json"))
    fit = fit_observations(observations, starts=args.starts, seed=args.seed, min_tokens=args.min_tokens)
    write_json_atomic(output, fit)
    dropped = fit["form"]["dropped"]
    print(f"[plan] {len(observations) - fit['left_out']} observations fitted; form: {'full' if not dropped else 'reduced: ' + '; '.join(dropped)}")
    for side in ("general", "domain"):
        params = ", ".join(f"{k}={v:.4g}" for k, v in fit[side]["params"].items())
        print(f"[plan] {side}: {params}")
    print(f"[plan] fit: {output}")
    return EXIT_OK


def _load(path: str):
    from ecomharness.plan.fit import load_fit

    return load_fit(_read_json(path, "`plan fit` output"), path)


def _predict(args) -> int:
    import json

    from ecomharness.plan.fit import predict_losses

    result = predict_losses(_load(args.fit), args.domain_share, args.tokens, args.model_params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    print(f"[plan] domain share {args.domain_share:g}, {args.tokens:,.0f} tokens: general loss "
          f"{result['general_loss']:.4f}, domain loss {result['domain_loss']:.4f}")
    for line in result["extrapolated"]:
        print(f"[plan] extrapolated: {line}")
    return EXIT_OK


def _recommend(args) -> int:
    import json
    from pathlib import Path

    from ecomharness.plan.fit import recommend
    from ecomharness.plan.report import write_outputs

    fit = _load(args.fit)
    result = recommend(fit, args.tokens, args.tolerance, args.model_params, args.bootstrap, args.seed)
    out = Path(args.out) if args.out else Path(args.fit).resolve().parent / "recommend"
    paths = write_outputs(fit, result, out)
    result.pop("_curves")
    result["files"] = {k: str(v) for k, v in paths.items()}
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if result["domain_share"] is None:
        print(f"[plan] no domain share qualifies: {result['reason']}")
    else:
        interval = result["interval"]
        print(f"[plan] recommended domain share {result['domain_share']:.3f}"
              + (f" (95% bootstrap interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
              + f": {result['reason']}")
        print(f"[plan] predicted general loss {result['general_loss']:.4f} (limit {result['general_loss_limit']:.4f}), "
              f"domain loss {result['domain_loss']:.4f}")
    print(f"[plan] curves: {paths['curves']}; table: {paths['table']}")
    return EXIT_OK
