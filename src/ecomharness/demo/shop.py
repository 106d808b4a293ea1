"""The demo's synthetic shop: product records in four linked sources, plus general text.

Products are drawn from the vocabulary the bundled e-commerce tasks use
(``ecomharness.demo.vocab``) and serialised the way the task prompts read them
(``key:value`` attribute lines, titles, one-sentence descriptions), because a small model
learns a domain only from text in the shape it is asked about: the training text must hold
the separators and ``key:value`` lines the prompts use (found in a prototype run while
the demo was sized).
Titles that occur in the tasks' test samples are left out of the corpus. 75% of the
products are Chinese clothing and other categories, 25% English gear.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ecomharness.demo import vocab
from ecomharness.demo.general import write_general
from ecomharness.resources import bundled_path

SOURCES = ("products", "attributes", "descriptions", "reviews")
TEMPLATES = {"products": "{{ text }}", "attributes": "{{ text }}", "descriptions": "{{ text }}", "reviews": "{{ text }}"}
REVIEWS_ZH = ["{v}很正，穿着舒服。", "质量不错，{v}和图片一样。", "物流很快，{v}满意。", "{v}一般，性价比还行。"]
REVIEWS_EN = ["The {v} is great.", "Solid {v}, fast delivery.", "Good value, the {v} works well."]


def held_out_texts() -> set[str]:
    """Every input text of the bundled ecom test samples: kept out of the corpus."""
    texts = set()
    for path in (bundled_path("tasks") / "_samples" / "ecominstruct").glob("*/test.json"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.add(json.loads(line)["sentences"].split("\n")[0])
    return texts


def clothing_records(rng: random.Random, pid: str) -> dict[str, list[str]]:
    """One Chinese clothing product in the four sources (attribute-rich)."""
    title, spans, noun = vocab.attribute_title(rng)
    values = "".join(s["term"] for s in spans)
    attributes = "；".join([f"品类:{noun}"] + [f"{s['type']}:{s['term']}" for s in spans])
    typed = "\n".join(f"{s['type']}: {s['term']}" for s in spans)
    description = vocab.description(spans, noun)
    extra = rng.choice(["做工精细，走线整齐。", "版型宽松，不挑身材。", "多色可选，百搭实用。"])
    return {
        "products": [f"{title}\n类目：服装\n品牌：{title[:2]}\n标题：{values}{noun}\n短标题：{spans[-1]['term']}{noun}"],
        "attributes": [f"{attributes}\n{typed}"],
        "descriptions": [f"{description[:-1]}，{extra}品牌{title[:2]}，品质保证。\n概括：{description}"],
        "reviews": [rng.choice(REVIEWS_ZH).format(v=rng.choice(spans)["term"]) for _ in range(rng.randint(0, 2))],
    }, title


def category_records(rng: random.Random, pid: str) -> dict[str, list[str]]:
    """One Chinese product of any category (for product classification)."""
    category = rng.choice(sorted(vocab.CATEGORIES))
    noun = rng.choice(vocab.CATEGORIES[category])
    title = f"{rng.choice(vocab.BRANDS)}{''.join(rng.sample(vocab.FILLERS, 2))}{noun}"
    return {
        "products": [f"{title}\n类目：{category}"],
        "attributes": [f"品类:{noun}；类目:{category}"],
        "descriptions": [f"这款{noun}属于{category}类目。"],
        "reviews": [rng.choice(REVIEWS_ZH).format(v=noun) for _ in range(rng.randint(0, 1))],
    }, title


def english_records(rng: random.Random, pid: str) -> dict[str, list[str]]:
    """One English product: brand and product entities named in the text."""
    brand, mod, product = rng.choice(vocab.EN_BRANDS), rng.choice(vocab.EN_MODIFIERS), rng.choice(vocab.EN_PRODUCTS)
    title = f"{brand} {mod} {product}, free shipping"
    return {
        "products": [f"{title}\nBrand: {brand}\nProduct: {product}\nEntities: {brand}, {product}"],
        "attributes": [f"brand:{brand}; product:{product}; feature:{mod}"],
        "descriptions": [f"The {product} from {brand} is {mod}."],
        "reviews": [rng.choice(REVIEWS_EN).format(v=product) for _ in range(rng.randint(0, 2))],
    }, title


def write_shop(out_dir: Path, n_products: int, n_general: int, seed: int = 0) -> dict[str, Path]:
    """Write the shop's sources (``{source}_{lang}.jsonl``) and general text; return paths."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{s}_{lang}" for s in SOURCES for lang in ("zh", "en")] + ["general_zh", "general_en"]
    paths = {name: out_dir / f"{name}.jsonl" for name in names}
    handles = {name: path.open("w", encoding="utf-8") for name, path in paths.items()}
    held_out = held_out_texts()
    try:
        made = 0
        while made < n_products:
            roll = rng.random()
            maker, lang = ((clothing_records, "zh") if roll < 0.5 else (category_records, "zh") if roll < 0.75
                           else (english_records, "en"))
            records, title = maker(rng, f"p{made}")
            if title in held_out:
                continue
            for source, texts in records.items():
                for text in texts:
                    handles[f"{source}_{lang}"].write(json.dumps({"product_id": f"p{made}", "text": text},
                                                                 ensure_ascii=False) + "\n")
            made += 1
        write_general(handles, rng, n_general)
    finally:
        for handle in handles.values():
            handle.close()
    return paths


def shop_sources(paths: dict[str, Path], kinds=("domain", "general")) -> list[dict]:
    """Data-recipe ``sources`` for the shop files, of the given kinds."""
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
        sources.append(entry)
    return sources
