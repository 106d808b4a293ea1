"""Every hook a plugin may implement, in one place.

A plugin is a plain module (or object) with functions decorated by
``ecomharness.hookimpl`` and named like the specs below. It is found through the
``ecomharness`` entry-point group; the built-in features are registered the same way.
A plugin implements only the hooks it needs, and each implementation takes only the
arguments it uses (pluggy passes them by name).

docs/plugins.md lists these hooks for plugin authors; a test keeps the two in step.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ecomharness")
hookimpl = pluggy.HookimplMarker("ecomharness")


@hookspec
def ecomharness_task_dirs():
    """Directories of lm-eval task YAML files that this plugin provides.

    Called whenever tasks are listed or an evaluation builds its task index. Return a
    list of paths (``str`` or ``pathlib.Path``), each a directory that lm-eval's
    ``TaskManager(include_path=...)`` can scan. Results of all plugins are combined;
    a later plugin's task of the same name overrides an earlier one, as lm-eval does
    for include paths.
    """


@hookspec
def ecomharness_metric_modules():
    """Python modules to import before any evaluation starts.

    Called once per process before tasks are built, so that modules which register
    lm-eval metrics, aggregations, filters or models by name (``lm_eval.api.registry``)
    have run their registrations. Return a list of importable module names
    (``"my_plugin.metrics"``). Results of all plugins are combined.
    """


@hookspec
def ecomharness_aggregations():
    """Paired-resampling forms of lm-eval aggregations, by aggregation name.

    Called the first time a per-document table is tested or given a bootstrap error.
    Return a mapping from an aggregation name (as a task's ``metric_list`` names it, and
    as registered with lm-eval) to a ``metrics.corpus.Aggregation`` or its
    ``"module:attr"``: the record's ``count_form(values)`` turns the per-document values
    ``process_results`` returned into per-document counts and the metric as a function
    of their sums (``metrics.corpus.CountForm``), so a paired bootstrap, the McNemar
    test and bootstrap standard errors work on the metric; ``paired(candidate,
    baseline)`` (optional) builds both sides over shared columns (one label set, say).
    An aggregation without a record has no paired test: the gate fails closed
    (``unpaired``). Names must be unique across plugins.
    """


@hookspec
def ecomharness_record_formats():
    """Readers that turn files in a public data format into lm-eval documents.

    Called when the record-format registry is first used. Return a mapping from format
    name to a reader: a callable, or a ``"module:attr"`` string imported on first use.
    A reader is called as ``reader(path, **options)`` and returns a list of dicts. Names
    must be unique across plugins; a clash is an error naming both plugins.
    """


@hookspec
def ecomharness_data_sources():
    """Readers of raw corpora for ``ecomharness data build``, by format name.

    Called when a data recipe is loaded. Return a mapping from a format name (the
    ``format`` field of a recipe source) to a reader, a callable or ``"module:attr"``.
    A reader is called as ``reader(path, options)`` with the source's resolved path and
    its ``options`` mapping, and yields ``(location, record)`` pairs: ``location`` names
    the record in errors (``"file.jsonl:12"``) and ``record`` is a dict, or a
    ``formats.common.RecordError`` for a record that could not be read (it is raised
    or counted, as the recipe's ``on_error`` says). Names must be unique across plugins.
    A reader may also carry ``pieces`` and ``read_piece`` (``data.sources``) to be read
    in parallel pieces by the Ray engine; without them it is read by one task.
    """


@hookspec
def ecomharness_filters():
    """Record filters for ``data build``, by name (a recipe source's ``filters[].name``).

    Called when a data recipe is loaded. Return a mapping from a filter name to a
    factory (callable or ``"module:attr"``) called as ``factory(options, where)`` with the
    filter's recipe options (``name`` removed) and the recipe field they came from; it
    raises ``UserError`` naming ``where`` for a bad option and returns ``check(text,
    record) -> reason | None`` (None keeps the record; a short reason drops it). The
    check must depend on the text and record alone: both engines call it on every
    record. Built in: ``length``, ``repetition``, ``characters``, ``required_fields``,
    ``script`` (``ecomharness.data.filters``).
    """


@hookspec
def ecomharness_mixers():
    """Ways to turn domain records into training samples, by mixer name.

    Called when a data recipe is loaded. Return a mapping from a mixer name (the
    recipe's ``mixer.name``) to a callable or ``"module:attr"``. A mixer is called as
    ``mixer(table, options, seed)`` where ``table`` is an ``ecomharness.data.records.
    RecordTable`` of the domain records and ``options`` the recipe's ``mixer`` mapping
    without ``name``; it returns an ``ecomharness.data.mixers.Mix``: record indices in
    sample order plus sample boundaries, and counts for the build report. The same
    input and seed must give the same output.
    """


@hookspec
def ecomharness_gate_rules():
    """Rule kinds for gate policies, by name.

    Called when a policy is loaded. Return a mapping from a rule kind (a policy rule's
    ``kind``) to a callable or ``"module:attr"``, called as
    ``fn(rule, gate)`` with a ``gate.policy.Rule`` (its extra YAML keys in
    ``rule.options``) and the run, a ``gate.run.GateRun``: ``gate.candidate`` and
    ``gate.baseline`` (``gate.evidence.Evidence``, the baseline may be None),
    ``gate.policy``, and the tests made so far (``gate.significance.significance(gate,
    rule, task, c, b)`` makes one, once per run). It returns a list of
    ``gate.rules.Check``, each passed or failed with a reason a reviewer can read, or of
    measurements decided after Holm's correction (``gate.rules.Comparison``).
    ``gate.rules.provenance`` gives the fail-closed checks to apply first. Names must be
    unique across plugins.
    """


@hookspec
def ecomharness_selectors():
    """Document scorers for data selection (a data recipe's ``select.scorers``), by name.

    Called when a recipe with a ``select`` block is built. Return a mapping from a
    scorer name to a factory (callable or ``"module:attr"``) called with the scorer's
    recipe options (``weight`` removed); the factory returns an object with
    ``score(texts) -> numpy array``, a ``config`` dict that identifies it for the score
    cache (a score must depend only on the text and the config), and optionally
    ``higher_is_better`` (default True). Built in: ``similarity`` (ETS-DACP),
    ``perplexity`` and ``pos_entropy`` (ETA-DACP).
    """


@hookspec
def ecomharness_topic_classifiers():
    """Topic classifiers for topic-balanced selection (``select.balance.classifier``), by name.

    Return a mapping from a classifier name to a factory (callable or ``"module:attr"``)
    called with the recipe's ``select.balance.options``; the factory returns an object
    with ``classify(texts) -> list[str]`` (one topic per rendered record). Used when
    records carry no topic field. Built in: ``keywords`` (the topic whose keywords occur
    most often).
    """

