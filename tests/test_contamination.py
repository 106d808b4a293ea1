"""Contamination (data/contamination.py, `ecomharness contamination`): planted task
documents found verbatim, lightly edited and embedded in longer text; clean records left
alone; template n-grams and documents too short to check accounted for."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from ecomharness.data.contamination import build_index, parse_contamination, task_documents, units
from ecomharness.errors import UserError
from tests.conftest import run_cli

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def light_edit(text: str, rng: random.Random) -> str:
    """Two characters changed, spacing and punctuation changed, sentences reordered."""
    chars = list(text)
    content = [i for i, c in enumerate(chars) if c.isalnum()]
    for i in rng.sample(content, min(2, len(content))):
        chars[i] = "某" if "\u4e00" <= chars[i] <= "\u9fff" else "x"
    edited = "".join(chars).replace("，", ", ").replace("\n", "  ").replace(",", " ,")
    sentences = [s for s in re.split(r"(?<=[。.!！])", edited) if s]
    rng.shuffle(sentences)
    return " ".join(sentences)


def clean_records(n_products: int = 2000, n_general: int = 3000) -> list[str]:
    """Every record of the synthetic shop and its general text, as one string each."""
    import tempfile

    from ecomharness.testing.corpus import write_corpus

    paths = write_corpus(Path(tempfile.mkdtemp()), n_products=n_products, n_general=n_general, seed=11)
    return [" ".join(str(v) for v in json.loads(line).values() if isinstance(v, str))
            for p in paths.values() for line in p.read_text(encoding="utf-8").splitlines()]


def planted(index, texts: dict, clean: list[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """Recall per language and kind of plant over the checked documents, and the share of
    clean records that match anything."""
    rng = random.Random(seed)
    found: dict[str, dict[str, list]] = {}
    for doc, (task, doc_id) in enumerate(index.documents):
        text = texts[task][doc_id]
        language = "zh" if re.search("[\u4e00-\u9fff]", text) else "en"
        plants = {"verbatim": text, "light edits": light_edit(text, rng),
                  "embedded": f"{clean[doc % len(clean)]} {text} {clean[(7 * doc) % len(clean)]}"}
        for kind, plant in plants.items():
            found.setdefault(language, {}).setdefault(kind, []).append(doc in index.matches(plant))
    recall = {language: {kind: sum(v) / len(v) for kind, v in kinds.items()} for language, kinds in found.items()}
    recall["clean"] = {"false positive share": sum(1 for t in clean if index.matches(t)) / len(clean)}
    return recall


def test_units_are_words_for_latin_text_and_characters_for_cjk():
    assert units("iPhone手机, Red dress!") == ["iphone", "手", "机", "red", "dress"]
    assert units("ＲＥＤ　２０２４") == ["red", "2024"]


def test_template_ngrams_are_not_content_and_short_documents_are_not_clean():
    prompt = "classify the following product title into one of the listed categories please"
    docs = {"t": [(i, f"{prompt} title {i} {'word ' * (i % 3)}") for i in range(20)]
            + [(20, "tiny doc")], "u": [(0, "红色连衣裙夏季新款女装短袖")]}
    index = build_index(docs, parse_contamination({"tasks": ["t", "u"]}, "x"))
    # The prompt is in every document: its n-grams are template. What each document adds
    # (one to three words) is too little to check: counted as unchecked, never as clean.
    assert index.template["t"] > 0 and index.unchecked["t"] == list(range(21))
    assert index.unchecked["u"] == [] and index.totals == {"t": 21, "u": 1}
    # Without the short-document rule only n-grams of 13 words can check: one template
    # n-gram, and the same documents unchecked.
    plain = build_index(docs, parse_contamination({"tasks": ["t", "u"], "short_similarity": 0}, "x"))
    assert plain.template["t"] == 1 and plain.unchecked["t"] == list(range(21)) and plain.unchecked["u"] == []
    assert index.matches(f"{prompt} title 3 word") == {}
    assert [index.documents[d] for d in index.matches("店铺上新：红色连衣裙夏季新款女装短袖，包邮")] == [("u", 0)]


def test_short_documents_are_confirmed_by_alignment_not_by_one_short_ngram():
    docs = {"r": [(0, "The bread is top notch as well."), (1, "Service was slow but the staff were kind."),
                  (2, "Good value.")],
            "z": [(0, "HC圆领拼接连衣裙"), (1, "夏季新款短袖T恤")]}
    index = build_index(docs, parse_contamination({"tasks": ["r", "z"]}, "x"))
    assert index.unchecked == {"r": [2], "z": []}  # two words: too short to check at all
    ids = lambda text: sorted(index.documents[d] for d in index.matches(text))  # noqa: E731
    # Two characters changed, other spacing: still found, inside longer text too.
    assert ids("Great lunch. The bread is tap notch as wel! Coffee was cold.") == [("r", 0)]
    assert ids("新品 HC 圆领拼接连衣裙 包邮") == [("z", 0)]
    assert ids("夏季新款短袖T血") == [("z", 1)]
    # A shared short n-gram alone is a candidate, not a finding.
    assert ids("The bread is stale and the staff were rude.") == []
    assert ids("连衣裙 夏季 新款") == []
    off = build_index(docs, parse_contamination({"tasks": ["r", "z"], "short_similarity": 0}, "x"))
    assert off.unchecked == {"r": [0, 1, 2], "z": [0, 1]}


def test_bad_settings_name_the_field():
    with pytest.raises(UserError, match=r"decontaminate\.tasks: expected a list"):
        parse_contamination({"tasks": []}, "decontaminate")
    with pytest.raises(UserError, match=r"\.ngram_words: expected a whole number from 3"):
        parse_contamination({"tasks": ["a"], "ngram_words": 1}, "decontaminate")
    with pytest.raises(UserError, match=r"\.threshold: expected a share"):
        parse_contamination({"tasks": ["a"], "threshold": 1.0}, "decontaminate")
    with pytest.raises(UserError, match=r"\.short_similarity: expected a share"):
        parse_contamination({"tasks": ["a"], "short_similarity": 85}, "decontaminate")
    with pytest.raises(UserError, match=r"\.min_words: expected a whole number from 2"):
        parse_contamination({"tasks": ["a"], "min_words": 1}, "decontaminate")
    with pytest.raises(UserError, match=r"\.action: expected one of"):
        parse_contamination({"tasks": ["a"], "action": "delete"}, "decontaminate")


@pytest.fixture(scope="module")
def bundled():
    """The bundled sample documents of every ecom_icl task, as lm-eval renders them."""
    docs = task_documents(["ecom_icl"])
    return docs, {task: dict(items) for task, items in docs.items()}


def test_planted_documents_of_the_bundled_samples_are_found(bundled):
    docs, texts = bundled
    index = build_index(docs, parse_contamination({"tasks": ["ecom_icl"]}, "x"))
    figures = planted(index, texts, clean_records())
    for language in ("zh", "en"):
        assert figures[language]["verbatim"] == 1.0 and figures[language]["embedded"] == 1.0
        assert figures[language]["light edits"] >= 0.9, figures
    assert figures["clean"]["false positive share"] <= 0.001
    # The English sample documents are under 13 words: checked as short documents, but
    # those with under 5 words of their own besides the task's template are left
    # unchecked, never called clean.
    assert 0 < len(index.unchecked["ecom_icl_ned"]) < index.totals["ecom_icl_ned"] / 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")
def test_planted_documents_of_the_real_release_files_are_found():
    docs = {}
    for folder in sorted((SHARED / "ecominstruct").iterdir()):
        records = [json.loads(line) for line in (folder / "test.json").read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        docs[folder.name] = [(i, r["sentences"] if isinstance(r["sentences"], str) else " ".join(r["sentences"]))
                             for i, r in enumerate(records)]
    fiqa = [json.loads(line) for line in (SHARED / "finben" / "fiqasa" / "valid.jsonl").read_text().splitlines()]
    docs["fiqasa"] = [(i, r["text"]) for i, r in enumerate(fiqa)]
    index = build_index(docs, parse_contamination({"tasks": list(docs)}, "x"))
    figures = planted(index, {t: dict(items) for t, items in docs.items()}, clean_records(500, 800))
    for language in ("zh", "en"):
        assert figures[language]["verbatim"] == 1.0 and figures[language]["embedded"] == 1.0
        # Most are short documents (a dozen words, twenty characters), found through the
        # alignment that confirms short n-gram candidates.
        assert figures[language]["light edits"] >= 0.9, figures
    assert figures["clean"]["false positive share"] <= 0.001
    # Only documents under 5 words or 6 characters of their own are left unchecked.
    assert sum(len(ids) for ids in index.unchecked.values()) <= 0.02 * sum(len(d) for d in docs.values())


def test_the_command_reports_found_documents_with_their_records(bundled, tmp_path):
    docs, texts = bundled
    pdc = docs["ecom_icl_pdc"]
    corpus = tmp_path / "crawl.jsonl"
    rows = [{"text": "a clean record about shoes"}, {"text": pdc[3][1]}, {"body": "no text field"},
            {"text": "店铺首页 " + pdc[7][1] + " 欢迎选购"}]
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "{bad json\n",
                      encoding="utf-8")
    report = tmp_path / "report.json"
    done = run_cli("contamination", str(corpus), "--tasks", "ecom_icl_pdc,ecom_icl_tig", "--output", str(report))
    assert done.returncode == 0, done.stderr
    assert "skipped 1 records: no text field 'text'" in done.stdout
    assert "skipped 1 records: unreadable line" in done.stdout
    written = json.loads(report.read_text())
    pdc_row = written["tasks"]["ecom_icl_pdc"]
    # The planted two, and any other sample document whose content they carry (the
    # bundled sample reuses its product titles across documents).
    assert {3, 7} <= set(pdc_row["found_ids"])
    shared = [i for i in pdc_row["found_ids"] if i not in (3, 7)]
    assert all(any(texts["ecom_icl_pdc"][i].split("\n")[0] in texts["ecom_icl_pdc"][j] for j in (3, 7)) for i in shared)
    assert f"| ecom_icl_pdc | 40 | 40 | {pdc_row['found']} | {pdc_row['found'] / 40:.4f} |" in done.stdout
    assert pdc_row["records"]["3"] == [{"file": str(corpus), "line": 2}]
    assert pdc_row["records"]["7"] == [{"file": str(corpus), "line": 4}]
    assert written["tasks"]["ecom_icl_tig"]["found"] == 0
    failed = run_cli("contamination", str(corpus), "--tasks", "ecom_icl_pdc", "--fail-above", "0")
    assert failed.returncode == 1 and "FAILED: ecom_icl_pdc above 0" in failed.stdout
    bad = run_cli("contamination", str(tmp_path / "missing.jsonl"), "--tasks", "ecom_icl_pdc")
    assert bad.returncode == 2 and "no such file or folder" in bad.stderr


def test_a_build_drops_or_flags_records_holding_test_documents(bundled, tmp_path):
    """Two test documents of a task crawled into a source: the build finds both, drops
    the records (or keeps them, flagged), and says so per task and per source."""
    import yaml

    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe
    from tests.conftest import corpus_with_tokenizer

    docs, _ = bundled
    sources = corpus_with_tokenizer(tmp_path, n_products=100, n_general=200, seed=8, vocab_size=500)
    crawl = tmp_path / "raw" / "crawl.jsonl"
    pdc = docs["ecom_icl_pdc"]
    crawl.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                             for t in ("一条干净的记录，关于鞋子的。", pdc[4][1], "店铺：" + pdc[9][1] + "，欢迎")),
                     encoding="utf-8")
    sources.append({"name": "crawl", "kind": "domain", "language": "zh", "format": "jsonl", "path": str(crawl)})

    def build(name, action):
        recipe = {"output": str(tmp_path / name), "tokenizer": str(tmp_path / "tok"), "seq_len": 64,
                  "sources": sources, "ratio": {"general_languages": {"zh": 1, "en": 1}},
                  "decontaminate": {"tasks": ["ecom_icl_pdc"], "action": action}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
        lines: list[str] = []
        return build_dataset(load_recipe(path), log=lines.append), lines

    dropped, lines = build("dropped", "drop")
    crawl_stats = next(s for s in dropped["sources"] if s["name"] == "crawl")
    assert crawl_stats["contaminated"] == 2 and crawl_stats["records"] == 1
    report = dropped["contamination"]["tasks"]["ecom_icl_pdc"]
    assert {4, 9} <= set(report["found_ids"]) and report["documents"] == 40
    assert any("decontamination: " in line and "dropped" in line for line in lines)
    assert "## Contamination" in (tmp_path / "dropped" / "stats.md").read_text()
    flagged, _ = build("flagged", "flag")
    crawl_flagged = next(s for s in flagged["sources"] if s["name"] == "crawl")
    assert crawl_flagged["contaminated"] == 2 and crawl_flagged["records"] == 3
    assert flagged["contamination"]["tasks"] == dropped["contamination"]["tasks"]
    # The command reads a build's packed blocks back (decoded): the flagged documents are
    # in the training data, the dropped ones are not.
    kept = run_cli("contamination", str(tmp_path / "flagged"), "--tasks", "ecom_icl_pdc")
    gone = run_cli("contamination", str(tmp_path / "dropped"), "--tasks", "ecom_icl_pdc")
    assert kept.returncode == 0 and gone.returncode == 0, kept.stderr + gone.stderr
    found = {name: int(next(line for line in run.stdout.splitlines() if line.startswith("| ecom_icl_pdc |"))
                       .split("|")[4]) for name, run in (("kept", kept), ("gone", gone))}
    assert found["kept"] >= 2 and found["gone"] == 0, found
    # A task that does not exist fails before anything is read or written.
    import dataclasses

    recipe = load_recipe(tmp_path / "dropped.yaml")
    unknown = dataclasses.replace(recipe, output=tmp_path / "never",
                                  decontaminate=dataclasses.replace(recipe.decontaminate, tasks=("no_such_task",)))
    with pytest.raises(UserError, match="no_such_task"):
        build_dataset(unknown, log=lambda *_: None)
    assert not (tmp_path / "never").exists()


def test_training_carries_the_build_contamination_into_records_the_gate_reads(tmp_path):
    """The link from a build to a verdict: what a build found (flagged, kept) is what
    training writes into each ledger record, and what the gate fails closed on."""
    from types import SimpleNamespace

    from ecomharness.evaluation.ledger import checkpoint_records
    from ecomharness.gate.evidence import from_record
    from ecomharness.gate.policy import parse_policy
    from ecomharness.gate.verdict import run_gate
    from ecomharness.train.components import training_contamination

    build = tmp_path / "data"
    (build / "dataset").mkdir(parents=True)
    (build / "dataset" / "state.json").write_text("{}")
    block = {"action": "flag", "records": {"crawl": 2, "shop": 0},
             "tasks": {"ecom_icl_pdc": {"documents": 40, "checked": 40, "found": 2, "share": 0.05},
                       "heldout:shop": {"documents": 9, "checked": 9, "found": 1, "share": 0.11}}}
    (build / "stats.json").write_text(json.dumps({"contamination": block}))
    carried = training_contamination(SimpleNamespace(data=SimpleNamespace(path=str(build))))
    assert set(carried) == {"ecom_icl_pdc"}
    assert carried["ecom_icl_pdc"]["share"] == 0.05 and carried["ecom_icl_pdc"]["sources"] == ["crawl"]
    dropped = training_contamination(SimpleNamespace(data=SimpleNamespace(path=str(build / "dataset"))))
    assert dropped == carried  # the output or its dataset folder, as training accepts
    (build / "stats.json").write_text(json.dumps({"contamination": {**block, "action": "drop"}}))
    assert training_contamination(SimpleNamespace(data=SimpleNamespace(path=str(build))))["ecom_icl_pdc"]["share"] == 0

    def record(task_set, contamination):
        return {"checkpoint": "checkpoint-10", "step": 10, "status": "ok", "task_set": task_set,
                "metrics": {"ecom_icl_pdc": {"acc": {"value": 0.9, "stderr": 0.01}}},
                "task_versions": {"ecom_icl_pdc": 1}, "contamination": contamination}

    # Two task sets of one checkpoint read as one keep the contamination of both.
    combined = checkpoint_records([record("a", {}), record("b", {"ecom_icl_pdc": carried["ecom_icl_pdc"]})])[0]
    candidate = from_record(combined, "checkpoint-10")
    verdict = run_gate(parse_policy({"rules": [{"kind": "min", "tasks": ["ecom_icl_pdc"], "metric": "acc",
                                                "threshold": 0.5}]}), candidate, None)
    assert not verdict.passed and "[fail-closed: contaminated]" in verdict.checks[0].reason
    with pytest.raises(UserError, match=r"contamination\.ecom_icl_pdc: expected"):
        from_record({**combined, "contamination": {"ecom_icl_pdc": {"share": 3}}}, "bad")


def test_a_build_for_a_training_recipe_checks_its_evaluation_tasks(tmp_path):
    """`data build --for TRAIN.yaml`: a `decontaminate` block without tasks takes the
    training recipe's evaluation tasks (held-out bits per byte aside: the build indexes
    its held-out texts itself); without `--for` it stops before reading anything."""
    import yaml

    from tests.conftest import corpus_with_tokenizer

    sources = corpus_with_tokenizer(tmp_path, n_products=60, n_general=100, seed=3, vocab_size=400)
    recipe = {"output": str(tmp_path / "built"), "tokenizer": str(tmp_path / "tok"), "seq_len": 64,
              "sources": sources, "ratio": {"general_languages": {"zh": 1, "en": 1}},
              "decontaminate": {"action": "flag"}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    train = yaml.safe_load((Path(__file__).resolve().parents[1] / "train" / "recipes" / "tiny_cpu.yaml").read_text())
    train["data"] = {"path": str(tmp_path / "built")}
    train["eval"] = {"inline": {"tasks": ["heldout_bpb", "ecom_icl_pdc"], "limit": 4},
                     "async": {"tasks": ["ecom_icl_pdc", "ecom_icl_tam"], "limit": 4}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train), encoding="utf-8")
    refused = run_cli("data", "build", str(tmp_path / "data.yaml"))
    assert refused.returncode == 2 and "decontaminate.tasks: no tasks given" in refused.stderr
    assert not (tmp_path / "built").exists()
    built = run_cli("data", "build", str(tmp_path / "data.yaml"), "--for", str(tmp_path / "train.yaml"))
    assert built.returncode == 0, built.stderr
    assert "decontaminating against ecom_icl_pdc, ecom_icl_tam" in built.stdout
    stats = json.loads((tmp_path / "built" / "stats.json").read_text())
    assert sorted(stats["contamination"]["tasks"]) == ["ecom_icl_pdc", "ecom_icl_tam"]
