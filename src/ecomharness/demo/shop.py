"""The demo's synthetic shop: product records in four linked sources, plus general text,
and the shop's own evaluation documents.

Products are drawn from the vocabulary the bundled e-commerce tasks use
(``ecomharness.demo.vocab``) and serialised the way the task prompts read them
(``key:value`` attribute lines, titles, one-sentence descriptions), because a small model
learns a domain only from text in the shape it is asked about: the training text must hold
the separators and ``key:value`` lines the prompts use (found in a prototype run while
the demo was sized).

The facts the classification tasks test are stated in one rendering everywhere:
a product's category as ``TITLE\\n类目：CATEGORY`` (its product record) and the type of
every entity of its title as ``TYPE: ENTITY`` lines after the title (its attribute
record, in a shuffled order, as attribute tables come; a fixed order would let a model
guess a type from its line's position). The demo's ranked-choice tasks
(``ecomharness/demo/tasks/shop_rc``) ask in the same rendering.

Evaluation documents (``write_shop`` writes them to ``OUT/tasks``, one EcomInstruct
folder per ``ecom_icl`` task) are drawn from products of the same generators that are
never written to the corpus: their titles, and the bundled samples' titles, are kept out.
Like real product feeds, the shop re-lists products: some products repeat an earlier
product's records word for word under a new id (exact duplicates), some with a line
added (near duplicates); reviews repeat their templates. 75% of the products are
Chinese clothing and other categories, 25% English gear.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from ecomharness.demo import vocab
from ecomharness.demo.general import write_general
from ecomharness.resources import bundled_path

# Bumped whenever the corpus or the evaluation documents change: the demo's cache of
# everything built from them (tokenizer, data, base model) is then rebuilt.
SHOP_VERSION = 2
SOURCES = ("products", "attributes", "descriptions", "reviews")
REVIEWS_ZH = ["{v}很正，穿着舒服。", "质量不错，{v}和图片一样。", "物流很快，{v}满意。", "{v}一般，性价比还行。"]
REVIEWS_EN = ["The {v} is great.", "Solid {v}, fast delivery.", "Good value, the {v} works well."]
# Re-listings, as product feeds carry them: shares of products that copy an earlier one.
EXACT_RELIST, NEAR_RELIST = 0.05, 0.03
# A near re-listing adds a phrase to a clothing product's description (about 60
# characters): far enough from the original to escape exact dedup, within near dedup's
# default Jaccard 0.8 of its 5-character shingles.
RELIST_PHRASES = ["欢迎选购。", "现货速发。", "限时特惠。"]
# The ecom_icl tasks' folders in the shop's evaluation directory (the names tasks/
# looks for, so the generative, ranked-choice and shop tasks read the same documents).
FOLDERS = {
    "ave": "ZH-MEPAVE-NER-attribute_value_extraction", "deg": "ZH-ECOM-GEN-description_generation",
    "des": "ZH-ECOM-GEN-description_summarization", "ent": "ZH-ECOM-CLS-entity_typing",
    "ned": "EN-Lenovo-Condition_Extract-Condition_Extract", "pdc": "ZH-OpenBG_Align-CLS-item_coarse_classify",
    "stg": "ZH-ECOM-GEN-short_title_generation", "tam": "ZH-OpenBG_Align-CLS-title_attribute_matching",
    "tig": "ZH-OpenBG_Align-Generate-title_generate",
}
ENTITY_TYPES = ["品牌", "颜色", "材质", "品类"]  # the bundled ent sample's label set
N_FEWSHOT = 16


def held_out_texts() -> set[str]:
    """Every input text of the bundled ecom test samples: kept out of the corpus."""
    texts = set()
    for path in (bundled_path("tasks") / "_samples" / "ecominstruct").glob("*/test.json"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.add(json.loads(line)["sentences"].split("\n")[0])
    return texts


def _typed_lines(rng: random.Random, pairs: list[tuple[str, str]]) -> str:
    """``TYPE: ENTITY`` lines in a random order (see the module docstring)."""
    pairs = list(pairs)
    rng.shuffle(pairs)
    return "\n".join(f"{kind}: {term}" for kind, term in pairs)


def clothing_product(rng: random.Random) -> dict:
    """One Chinese clothing product (attribute-rich): its records and the facts behind them."""
    title, spans, noun = vocab.attribute_title(rng)
    brand = title[:2]
    values = "".join(s["term"] for s in spans)
    attributes = "；".join([f"品类:{noun}"] + [f"{s['type']}:{s['term']}" for s in spans])
    typed = _typed_lines(rng, [("品牌", brand), ("品类", noun)] + [(s["type"], s["term"]) for s in spans])
    description = vocab.description(spans, noun)
    extra = rng.choice(["做工精细，走线整齐。", "版型宽松，不挑身材。", "多色可选，百搭实用。"])
    records = {
        "products": [f"{title}\n类目：服装\n品牌：{brand}\n标题：{values}{noun}\n短标题：{spans[-1]['term']}{noun}"],
        "attributes": [f"{attributes}\n{title}\n{typed}"],
        "descriptions": [f"{description[:-1]}，{extra}品牌{brand}，品质保证。\n概括：{description}"],
        "reviews": [rng.choice(REVIEWS_ZH).format(v=rng.choice(spans)["term"]) for _ in range(rng.randint(0, 2))],
    }
    return {"records": records, "title": title, "lang": "zh", "category": "服装", "noun": noun, "brand": brand,
            "spans": spans, "extra": extra}


def category_product(rng: random.Random, category: str | None = None) -> dict:
    """One Chinese product of any category (for product classification)."""
    category = category or rng.choice(sorted(vocab.CATEGORIES))
    noun = rng.choice(vocab.CATEGORIES[category])
    brand = rng.choice(vocab.BRANDS)
    title = f"{brand}{''.join(rng.sample(vocab.FILLERS, 2))}{noun}"
    records = {
        "products": [f"{title}\n类目：{category}"],
        "attributes": [f"品类:{noun}；类目:{category}\n{title}\n{_typed_lines(rng, [('品牌', brand), ('品类', noun)])}"],
        "descriptions": [f"这款{noun}属于{category}类目。"],
        "reviews": [rng.choice(REVIEWS_ZH).format(v=noun) for _ in range(rng.randint(0, 1))],
    }
    return {"records": records, "title": title, "lang": "zh", "category": category, "noun": noun, "brand": brand}


def english_product(rng: random.Random) -> dict:
    """One English product: brand and product entities named in the text."""
    brand, mod, product = rng.choice(vocab.EN_BRANDS), rng.choice(vocab.EN_MODIFIERS), rng.choice(vocab.EN_PRODUCTS)
    title = f"{brand} {mod} {product}, free shipping"
    records = {
        "products": [f"{title}\nBrand: {brand}\nProduct: {product}\nEntities: {brand}, {product}"],
        "attributes": [f"brand:{brand}; product:{product}; feature:{mod}"],
        "descriptions": [f"The {product} from {brand} is {mod}."],
        "reviews": [rng.choice(REVIEWS_EN).format(v=product) for _ in range(rng.randint(0, 2))],
    }
    return {"records": records, "title": title, "lang": "en", "brand": brand, "product": product, "mod": mod}


def _relist(rng: random.Random, earlier: dict, near: bool) -> dict:
    """A re-listing of an earlier product: its product, attribute and description records
    again (a clothing description with a phrase added when ``near``), a new review."""
    records = {k: list(v) for k, v in earlier["records"].items() if k != "reviews"}
    if near and "spans" in earlier:
        text, summary = records["descriptions"][0].split("\n", 1)
        records["descriptions"] = [f"{text}{rng.choice(RELIST_PHRASES)}\n{summary}"]
    records["reviews"] = [rng.choice(REVIEWS_ZH if earlier["lang"] == "zh" else REVIEWS_EN).format(
        v=earlier.get("noun") or earlier.get("product"))]
    return {**earlier, "records": records}


# ---------------------------------------------------------------- evaluation documents


def _span(target: str) -> dict:
    return {"start": 0, "end": len(target), "type": "output", "term": target}


def _doc(task: str, product: dict, i: int, rng: random.Random) -> dict:
    """One evaluation document of ``task`` about ``product``, in the bundled samples'
    format (``tasks/_make_samples.py``) and the corpus's rendering."""
    title = product["title"]
    if task == "pdc":
        return {"sentences": title, "labels": {"default": [product["category"]]}}
    if task == "ned":
        brand, mod, name = product["brand"], product["mod"], product["product"]
        start = len(brand) + len(mod) + 2
        return {"sentences": title, "spans": [{"start": 0, "end": len(brand), "type": "entity", "term": brand},
                                              {"start": start, "end": start + len(name), "type": "entity", "term": name}]}
    spans, noun = product["spans"], product["noun"]
    if task == "ave":
        return {"sentences": title, "spans": spans}
    if task == "ent":
        kind = ENTITY_TYPES[i % len(ENTITY_TYPES)]
        typed = {s["type"]: s["term"] for s in spans}
        entity = {"品牌": product["brand"], "品类": noun}.get(kind) or typed.get(kind)
        if entity is None:  # the title has no term of that type
            kind, entity = "品类", noun
        return {"sentences": f"{title}\n实体：{entity}", "labels": {"default": [kind]}}
    if task == "tam":
        span = rng.choice(spans)
        match = i % 2 == 0
        value = span["term"] if match else rng.choice([v for v in vocab.ATTRS[span["type"]] if v != span["term"]])
        return {"sentences": f"{title}\n属性：{span['type']}:{value}", "labels": {"default": ["是" if match else "否"]}}
    summary = vocab.description(spans, noun)
    if task == "tig":
        attributes = "；".join([f"品类:{noun}"] + [f"{s['type']}:{s['term']}" for s in spans])
        return {"sentences": attributes, "spans": [_span("".join(s["term"] for s in spans) + noun)]}
    if task == "deg":
        return {"sentences": title, "spans": [_span(summary)]}
    if task == "des":
        return {"sentences": f"{summary[:-1]}，{product['extra']}品牌{product['brand']}，品质保证。", "spans": [_span(summary)]}
    if task == "stg":
        long_title = title[:2] + "".join(rng.sample(vocab.FILLERS, 3)) + title[2:] + rng.choice(["女装", "男女同款", "热卖"])
        return {"sentences": long_title, "spans": [_span(spans[-1]["term"] + noun)]}
    raise ValueError(f"no shop documents for task {task!r}")


def _draw_task_documents(rng: random.Random, n_test: int) -> dict[str, dict[str, list]]:
    """``{task: {"test": docs, "fewshot": docs}}``, each document about a product of
    its own (the products are returned with them, to be kept out of the corpus)."""
    out = {}
    categories = sorted(vocab.CATEGORIES)
    for task in FOLDERS:
        splits = {}
        for split, n in (("test", n_test), ("fewshot", N_FEWSHOT)):
            docs = []
            for i in range(n):
                if task == "pdc":  # every category equally often, as the bundled sample
                    product = category_product(rng, categories[i % len(categories)])
                elif task == "ned":
                    product = english_product(rng)
                else:
                    product = clothing_product(rng)
                docs.append((product["title"], _doc(task, product, i, rng)))
            splits[split] = docs
        out[task] = splits
    return out


def write_task_folders(out_dir: Path, drawn: dict[str, dict[str, list]]) -> Path:
    """One EcomInstruct folder per ``ecom_icl`` task under ``out_dir``: the bundled
    sample's ``meta-info.json`` (labels and prompt) with the shop's documents."""
    samples = bundled_path("tasks") / "_samples" / "ecominstruct"
    for task, folder in FOLDERS.items():
        target = out_dir / folder
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples / task / "meta-info.json", target / "meta-info.json")
        for split, docs in drawn[task].items():
            with (target / f"{split}.json").open("w", encoding="utf-8") as fh:
                for _, doc in docs:
                    fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return out_dir


# ---------------------------------------------------------------- the corpus


def write_shop(out_dir: Path, n_products: int, n_general: int, seed: int = 0,
               n_test: int = 64) -> dict[str, Path]:
    """Write the shop's sources (``{source}_{lang}.jsonl``), general text and the
    evaluation folders (``tasks/``, ``n_test`` documents per task); return the sources'
    paths."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The evaluation products are drawn first, from their own stream, so the corpus
    # never holds their titles (nor the bundled samples').
    drawn = _draw_task_documents(random.Random(seed + 1), n_test)
    write_task_folders(out_dir / "tasks", drawn)
    held_out = held_out_texts() | {title for splits in drawn.values() for docs in splits.values()
                                   for title, _ in docs}
    names = [f"{s}_{lang}" for s in SOURCES for lang in ("zh", "en")] + ["general_zh", "general_en"]
    paths = {name: out_dir / f"{name}.jsonl" for name in names}
    handles = {name: path.open("w", encoding="utf-8") for name, path in paths.items()}
    try:
        made, listed = 0, []
        while made < n_products:
            roll = rng.random()
            if listed and roll < EXACT_RELIST + NEAR_RELIST:
                product = _relist(rng, rng.choice(listed), near=roll >= EXACT_RELIST)
            else:
                roll = rng.random()
                product = (clothing_product(rng) if roll < 0.5 else category_product(rng) if roll < 0.75
                           else english_product(rng))
                if product["title"] in held_out:
                    continue
                listed.append(product)
            for source, texts in product["records"].items():
                for text in texts:
                    handles[f"{source}_{product['lang']}"].write(json.dumps(
                        {"product_id": f"p{made}", "text": text}, ensure_ascii=False) + "\n")
            made += 1
        write_general(handles, rng, n_general)
    finally:
        for handle in handles.values():
            handle.close()
    return paths


def shop_sources(paths: dict[str, Path], kinds=("domain", "general"), filters: list[dict] | None = None) -> list[dict]:
    """Data-recipe ``sources`` for the shop files, of the given kinds, each with the
    corpus-cleaning ``filters`` given."""
    sources = []
    for name, path in paths.items():
        source, lang = name.rsplit("_", 1)
        kind = "general" if source == "general" else "domain"
        if kind not in kinds or path.stat().st_size == 0:
            continue
        entry = {"name": name, "kind": kind, "language": lang, "format": "jsonl", "path": str(path),
                 "template": "{{ text }}"}
        if kind == "domain":
            entry["key"] = "product_id"
        if filters:
            entry["filters"] = [dict(f) for f in filters]
        sources.append(entry)
    return sources
