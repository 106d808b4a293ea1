"""A seeded generator of synthetic corpora in the shape EcomGPT-CT trains on, for tests
and benchmarks (the demo writes its own shop, ``demo/shop.py``).

Domain: products in four sources linked by ``product_id`` — a product table (title,
category), attributes, descriptions and reviews — 75% Chinese, 25% English. General:
short encyclopedic / news-like paragraphs in Chinese and English. Every word list is
this project's own; the text is for exercising the pipeline and the demo, and says
nothing about real e-commerce text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ecomharness.demo.general import write_general

ZH = {
    "categories": {
        "连衣裙": ["领型", "袖长", "材质", "颜色"], "运动鞋": ["鞋帮高度", "材质", "颜色", "适用场景"],
        "蓝牙耳机": ["续航", "佩戴方式", "颜色", "降噪"], "保温杯": ["容量", "材质", "颜色", "保温时长"],
        "面霜": ["功效", "适用肤质", "容量", "质地"], "坚果礼盒": ["净含量", "口味", "包装", "产地"],
        "台灯": ["光源", "功率", "颜色", "调光方式"], "瑜伽垫": ["厚度", "材质", "颜色", "尺寸"],
    },
    "values": {
        "领型": ["圆领", "V领", "方领"], "袖长": ["短袖", "长袖", "七分袖"], "材质": ["纯棉", "涤纶", "不锈钢", "橡胶", "牛皮"],
        "颜色": ["红色", "黑色", "白色", "蓝色", "粉色"], "鞋帮高度": ["低帮", "高帮"], "适用场景": ["跑步", "通勤", "篮球"],
        "续航": ["20小时", "30小时", "40小时"], "佩戴方式": ["入耳式", "半入耳式"], "降噪": ["主动降噪", "无"],
        "容量": ["350毫升", "500毫升", "50克"], "保温时长": ["6小时", "12小时"], "功效": ["保湿", "修护", "提亮"],
        "适用肤质": ["干性", "油性", "混合性"], "质地": ["乳霜", "凝露"], "净含量": ["500克", "1千克"],
        "口味": ["原味", "盐焗", "奶香"], "包装": ["礼盒装", "袋装"], "产地": ["新疆", "云南", "浙江"],
        "光源": ["LED"], "功率": ["5瓦", "9瓦"], "调光方式": ["触控", "旋钮"], "厚度": ["6毫米", "10毫米"], "尺寸": ["183x61厘米"],
    },
    "brands": ["青禾", "木森", "北岸", "知夏", "云栖", "星屿", "拾光", "南舟", "远山", "朝露"],
    "review": ["质量很好，{v}和描述一致。", "物流很快，{v}很满意。", "性价比高，{v}不错，会回购。", "做工一般，{v}还行。"],
}
EN = {
    "categories": {
        "running shoes": ["upper", "sole", "color", "use"], "desk lamp": ["light", "power", "color", "dimming"],
        "backpack": ["capacity", "material", "color", "pockets"], "coffee grinder": ["burr", "settings", "color", "power"],
    },
    "values": {
        "upper": ["mesh", "knit"], "sole": ["rubber", "foam"], "color": ["black", "white", "blue", "grey"],
        "use": ["running", "training"], "light": ["LED"], "power": ["5 W", "150 W"], "dimming": ["touch", "knob"],
        "capacity": ["20 L", "30 L"], "material": ["nylon", "canvas"], "pockets": ["3", "5"], "burr": ["conical", "flat"],
        "settings": ["15", "40"],
    },
    "brands": ["Acmeflow", "Northpeak", "Lumora", "Vantix", "Brightwell", "Solvane"],
    "review": ["Great quality, the {v} is exactly as described.", "Fast delivery and the {v} is nice.",
               "Good value; the {v} works well.", "Average build, the {v} is fine."],
}


def product(rng: random.Random, pid: int, zh: bool) -> dict:
    """One product: its title, category and attribute values."""
    lex = ZH if zh else EN
    category = rng.choice(sorted(lex["categories"]))
    attrs = {name: rng.choice(lex["values"][name]) for name in lex["categories"][category]}
    brand = rng.choice(lex["brands"])
    picked = list(attrs.values())[:2]
    title = (brand + "".join(picked) + category) if zh else f"{brand} {' '.join(picked)} {category}"
    return {"product_id": f"p{pid}", "lang": "zh" if zh else "en", "brand": brand, "category": category,
            "title": title, "attrs": attrs}


def product_records(p: dict, rng: random.Random, n_reviews: int) -> dict[str, list[dict]]:
    """The product's records in each of the four sources."""
    zh = p["lang"] == "zh"
    sep = "：" if zh else ": "
    attributes = "\n".join(f"{k}{sep}{v}" for k, v in p["attrs"].items())
    first_value = next(iter(p["attrs"].values()))
    if zh:
        description = f"这款{p['category']}来自{p['brand']}，" + "，".join(f"{k}为{v}" for k, v in p["attrs"].items()) + "。"
    else:
        description = f"This {p['category']} from {p['brand']} has " + ", ".join(f"{k} {v}" for k, v in p["attrs"].items()) + "."
    lex = ZH if zh else EN
    return {
        "products": [{"product_id": p["product_id"], "title": p["title"], "category": p["category"]}],
        "attributes": [{"product_id": p["product_id"], "attributes": attributes}],
        "descriptions": [{"product_id": p["product_id"], "description": description}],
        "reviews": [{"product_id": p["product_id"], "review": rng.choice(lex["review"]).format(v=first_value)}
                    for _ in range(n_reviews)],
    }


def write_corpus(out_dir: Path, n_products: int, n_general: int, seed: int = 0, zh_share: float = 0.75) -> dict[str, Path]:
    """Write the four domain sources (split by language) and general text as JSON Lines.

    Returns the path of each file: ``{"products_zh": ..., "general_en": ...}``.
    """
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{s}_{l}" for s in ("products", "attributes", "descriptions", "reviews") for l in ("zh", "en")]
    names += ["general_zh", "general_en"]
    paths = {name: out_dir / f"{name}.jsonl" for name in names}
    handles = {name: path.open("w", encoding="utf-8") for name, path in paths.items()}
    try:
        for pid in range(n_products):
            p = product(rng, pid, rng.random() < zh_share)
            for source, records in product_records(p, rng, rng.randint(0, 3)).items():
                for record in records:
                    handles[f"{source}_{p['lang']}"].write(json.dumps(record, ensure_ascii=False) + "\n")
        write_general(handles, rng, n_general)
    finally:
        for handle in handles.values():
            handle.close()
    return paths


TEMPLATES = {
    "products": "{{ title }}\n{{ category }}",
    "attributes": "{{ attributes }}",
    "descriptions": "{{ description }}",
    "reviews": "{{ review }}",
}


def corpus_sources(paths: dict[str, Path]) -> list[dict]:
    """Recipe ``sources`` entries for a corpus written by :func:`write_corpus`."""
    sources = []
    for name, path in paths.items():
        kind_name, lang = name.rsplit("_", 1)
        if kind_name == "general":
            sources.append({"name": name, "kind": "general", "language": lang, "format": "jsonl",
                            "path": str(path), "template": "{{ text }}"})
        else:
            sources.append({"name": name, "kind": "domain", "language": lang, "format": "jsonl",
                            "path": str(path), "key": "product_id", "template": TEMPLATES[kind_name]})
    return sources
