"""Write every bundled task sample (seeded; run from anywhere).

    python tasks/_make_samples.py

The records are invented here from this script's own word lists: they let every task
run offline and test the wiring; they are not benchmark data and their scores mean
nothing about a model's real ability. Each sample is in the real format its task
reads: the EcomInstruct layout (ecom_icl, ecom_sft), the hub's own fields as JSON Lines
(general_icl), the FinBen fields (flare). Every sample has a test file and a separate
few-shot file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SEED = 20261121
N_TEST, N_FEWSHOT = 40, 16

# The product vocabulary is shared with the demo's synthetic CPT corpus, so that CPT on
# that corpus can show an effect on these tasks (the demo keeps test titles out of it).
from ecomharness.demo.vocab import (  # noqa: E402
    ATTRS, BRANDS, CATEGORIES, CLOTHES, EN_BRANDS, EN_MODIFIERS, EN_PRODUCTS, FILLERS, attribute_title, description,
)


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write records as UTF-8 JSON Lines (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_ecominstruct(folder: Path, meta: dict, make, rng: random.Random) -> None:
    """An EcomInstruct task folder: meta-info.json, test.json, fewshot.json."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"label_key": "default", "label_sep": ", ", **meta}
    (folder / "meta-info.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    write_jsonl(folder / "test.json", [make(rng, i) for i in range(N_TEST)])
    write_jsonl(folder / "fewshot.json", [make(rng, i + 1000) for i in range(N_FEWSHOT)])


def prompt(task_text: str) -> dict:
    """An EcomInstruct ``test_prompt`` in the instruction layout."""
    return {"instruction": "### Instruction:\n{sentences}\n" + task_text + "\n### Response:"}


# ---------------------------------------------------------------- ecom tasks


def ecom_tasks(root: Path, rng: random.Random) -> None:
    """The EcomICL / EcomSFT samples (EcomInstruct layout)."""
    cats = list(CATEGORIES)

    def ave(rng, i):
        text, spans, _ = attribute_title(rng)
        return {"sentences": text, "spans": spans}

    write_ecominstruct(root / "ave", {
        "task": "ZH-SAMPLE-AVE-attribute_value_extraction", "defi": "attribute value extraction",
        "label_set": {"default": list(ATTRS)},
        "test_prompt": prompt("从句子中抽取属性值，属性包括：{label_set}。每行输出“属性: 值”。"),
    }, ave, rng)

    def ned(rng, i):
        brand, mod, product = rng.choice(EN_BRANDS), rng.choice(EN_MODIFIERS), rng.choice(EN_PRODUCTS)
        text = f"{brand} {mod} {product}, free shipping"
        return {"sentences": text, "spans": [
            {"start": 0, "end": len(brand), "type": "entity", "term": brand},
            {"start": len(brand) + len(mod) + 2, "end": len(brand) + len(mod) + 2 + len(product), "type": "entity", "term": product},
        ]}

    write_ecominstruct(root / "ned", {
        "task": "EN-SAMPLE-NED-named_entity_detection", "defi": "named entity detection",
        "label_set": {"default": ["entity"]},
        "test_prompt": prompt("List the named entities (brands and products) in the text, separated by commas."),
    }, ned, rng)

    ent_types = ["品牌", "颜色", "材质", "品类"]

    def ent(rng, i):
        text, spans, noun = attribute_title(rng)
        kind = ent_types[i % len(ent_types)]
        entity = {"品牌": text[:2], "品类": noun}.get(kind)
        if entity is None:
            wanted = {"颜色": "颜色", "材质": "材质"}[kind]
            match = [s["term"] for s in spans if s["type"] == wanted]
            if not match:
                kind, entity = "品类", noun
            else:
                entity = match[0]
        return {"sentences": f"{text}\n实体：{entity}", "labels": {"default": [kind]}}

    write_ecominstruct(root / "ent", {
        "task": "ZH-SAMPLE-CLS-entity_typing", "defi": "entity typing",
        "label_set": {"default": ent_types},
        "test_prompt": prompt("判断实体的类型，从以下类型中选择：{label_set}。"),
    }, ent, rng)

    def pdc(rng, i):
        category = cats[i % len(cats)]
        noun = rng.choice(CATEGORIES[category])
        title = f"{rng.choice(BRANDS)}{''.join(rng.sample(FILLERS, 2))}{noun}"
        return {"sentences": title, "labels": {"default": [category]}}

    write_ecominstruct(root / "pdc", {
        "task": "ZH-SAMPLE-CLS-product_classification", "defi": "product classification",
        "label_set": {"default": cats},
        "test_prompt": prompt("从以下类别中选择商品所属类别：{label_set}。"),
    }, pdc, rng)

    def tam(rng, i):
        text, spans, _ = attribute_title(rng)
        span = rng.choice(spans)
        match = i % 2 == 0
        value = span["term"] if match else rng.choice([v for v in ATTRS[span["type"]] if v != span["term"]])
        return {"sentences": f"{text}\n属性：{span['type']}:{value}", "labels": {"default": ["是" if match else "否"]}}

    write_ecominstruct(root / "tam", {
        "task": "ZH-SAMPLE-CLS-title_attribute_matching", "defi": "title attribute matching",
        "label_set": {"default": ["是", "否"]},
        "test_prompt": prompt("判断商品标题与属性是否一致，回答：{label_set}。"),
    }, tam, rng)

    def attrs_of(spans, noun):
        return "；".join([f"品类:{noun}"] + [f"{s['type']}:{s['term']}" for s in spans])

    def generation(target: str) -> dict:
        return {"start": 0, "end": len(target), "type": "output", "term": target}

    def tig(rng, i):
        text, spans, noun = attribute_title(rng)
        title = "".join(s["term"] for s in spans) + noun
        return {"sentences": attrs_of(spans, noun), "spans": [generation(title)]}

    write_ecominstruct(root / "tig", {
        "task": "ZH-SAMPLE-GEN-title_generation", "defi": "title generation",
        "label_set": {"default": []},
        "test_prompt": prompt("根据商品属性生成商品标题。"),
    }, tig, rng)

    def deg(rng, i):
        text, spans, noun = attribute_title(rng)
        return {"sentences": text, "spans": [generation(description(spans, noun))]}

    write_ecominstruct(root / "deg", {
        "task": "ZH-SAMPLE-GEN-description_generation", "defi": "description generation",
        "label_set": {"default": []},
        "test_prompt": prompt("根据商品标题写一句商品描述。"),
    }, deg, rng)

    extras = ["做工精细，走线整齐。", "版型宽松，不挑身材。", "支持七天无理由退换。", "多色可选，百搭实用。"]

    def des(rng, i):
        text, spans, noun = attribute_title(rng)
        summary = description(spans, noun)
        long_text = summary[:-1] + "，" + "".join(rng.sample(extras, 2)) + f"品牌{text[:2]}，品质保证。"
        return {"sentences": long_text, "spans": [generation(summary)]}

    write_ecominstruct(root / "des", {
        "task": "ZH-SAMPLE-GEN-description_summarization", "defi": "description summarization",
        "label_set": {"default": []},
        "test_prompt": prompt("用一句话概括商品描述。"),
    }, des, rng)

    def stg(rng, i):
        text, spans, noun = attribute_title(rng)
        long_title = text[:2] + "".join(rng.sample(FILLERS, 3)) + text[2:] + rng.choice(["女装", "男女同款", "热卖"])
        short = spans[-1]["term"] + noun
        return {"sentences": long_title, "spans": [generation(short)]}

    write_ecominstruct(root / "stg", {
        "task": "ZH-SAMPLE-GEN-short_title_generation", "defi": "short title generation",
        "label_set": {"default": []},
        "test_prompt": prompt("把商品长标题压缩成简短标题。"),
    }, stg, rng)

    ner_types = ["品牌", "品类", "颜色"]

    def ner(rng, i):
        text, spans, noun = attribute_title(rng)
        gold = [{"start": 0, "end": 2, "type": "品牌", "term": text[:2]}]
        gold += [dict(s, type="颜色") for s in spans if s["type"] == "颜色"]
        gold.append({"start": len(text) - len(noun), "end": len(text), "type": "品类", "term": noun})
        return {"sentences": text, "spans": gold}

    write_ecominstruct(root / "ner", {
        "task": "ZH-SAMPLE-NER-product_ner", "defi": "named entity recognition",
        "label_set": {"default": ner_types},
        "test_prompt": prompt("识别句子中的实体，类型包括：{label_set}。每行输出“类型: 实体”。"),
    }, ner, rng)

    intents = {
        "查询物流": ["我的快递到哪了", "物流怎么一直不动", "包裹什么时候能到"],
        "退换货": ["这件衣服能退吗", "尺码不合适想换一件", "收到的东西坏了要退货"],
        "咨询尺码": ["身高一米七穿多大码", "这个鞋偏大还是偏小", "腰围七十选哪个尺码"],
        "修改地址": ["收货地址写错了能改吗", "帮我把地址改到公司", "我搬家了要换个地址"],
    }
    intent_names = list(intents)

    def itd(rng, i):
        intent = intent_names[i % len(intent_names)]
        query = rng.choice(intents[intent]) + rng.choice(["", "？", "，急", "，谢谢"])
        return {"sentences": query, "labels": {"default": [intent]}}

    write_ecominstruct(root / "itd", {
        "task": "ZH-SAMPLE-CLS-intent_detection", "defi": "intent detection",
        "label_set": {"default": intent_names},
        "test_prompt": prompt("判断用户问题的意图，从以下意图中选择：{label_set}。"),
    }, itd, rng)

    cities = [("浙江省", "杭州市", "西湖区"), ("江苏省", "南京市", "鼓楼区"), ("广东省", "深圳市", "南山区"), ("四川省", "成都市", "武侯区")]
    roads = ["文一路", "中山路", "科技园路", "人民南路", "解放路"]

    def adm(rng, i):
        province, city, district = rng.choice(cities)
        road, number = rng.choice(roads), rng.randint(1, 300)
        first = f"{province}{city}{district}{road}{number}号"
        same = i % 2 == 0
        if same:
            second = f"{city}{district}{road}{number}号" if rng.random() < 0.5 else f"{province}{city}{road}{number}号"
        else:
            other = rng.choice([r for r in roads if r != road])
            second = f"{province}{city}{district}{other}{number}号"
        return {"sentences": f"地址一：{first}\n地址二：{second}", "labels": {"default": ["是" if same else "否"]}}

    write_ecominstruct(root / "adm", {
        "task": "ZH-SAMPLE-CLS-address_matching", "defi": "address matching",
        "label_set": {"default": ["是", "否"]},
        "test_prompt": prompt("判断两个地址是否指向同一地点，回答：{label_set}。"),
    }, adm, rng)


# ---------------------------------------------------------------- general tasks (hub fields)


def general_tasks(root: Path, rng: random.Random) -> None:
    """AGNews, SQuAD v2, SNLI, TNEWS, CMRC2018, OCNLI samples with the hub's fields."""
    agnews = {
        0: ["The prime minister of {p} met the {q} delegation to discuss a border agreement.",
            "Voters in {p} return to the polls after the coalition collapsed."],
        1: ["{p} beat {q} 3-1 to reach the cup final on Sunday.",
            "The {p} striker signed a new contract before the season opener."],
        2: ["Shares of {p} rose after the company raised its annual profit forecast.",
            "{p} agreed to buy {q} in a deal that reshapes the retail market."],
        3: ["Researchers at {p} unveiled a battery that charges in five minutes.",
            "{p} released an update that fixes a security flaw in its browser."],
    }
    names = ["Northland", "Easton", "Riverdale", "Kestrel United", "Harbor City", "Orion Labs", "Maplecorp"]

    def ag(rng, i):
        label = i % 4
        text = rng.choice(agnews[label]).format(p=rng.choice(names), q=rng.choice(names))
        return {"text": text, "label": label}

    contexts = [
        ("Lumora was founded in {y} in the city of {c}. Its first product was a {p}.",
         [("When was Lumora founded?", "{y}"), ("In which city was Lumora founded?", "{c}"),
          ("What was Lumora's first product?", "a {p}"), ("Who is Lumora's chief executive?", None)]),
        ("The {c} river festival takes place every {m}. It attracts visitors who come to see the boat race.",
         [("When does the festival take place?", "every {m}"), ("What do visitors come to see?", "the boat race"),
          ("How long is the river?", None)]),
    ]

    def squad(rng, i):
        template, questions = rng.choice(contexts)
        values = {"y": str(rng.randint(1950, 2015)), "c": rng.choice(["Easton", "Riverdale", "Harbor City"]),
                  "p": rng.choice(EN_PRODUCTS), "m": rng.choice(["June", "August", "October"])}
        context = template.format(**values)
        question, answer = rng.choice(questions)
        if answer is None:
            return {"id": f"s{i}", "title": "sample", "context": context, "question": question,
                    "answers": {"text": [], "answer_start": []}}
        answer = answer.format(**values)
        return {"id": f"s{i}", "title": "sample", "context": context, "question": question,
                "answers": {"text": [answer], "answer_start": [context.index(answer)]}}

    snli_pairs = [
        ("A man is riding a bicycle down the street.", "A person is on a bike.", 0),
        ("A man is riding a bicycle down the street.", "The man is sleeping at home.", 2),
        ("A man is riding a bicycle down the street.", "The man is going to work.", 1),
        ("Two children play soccer in a park.", "Kids are playing outside.", 0),
        ("Two children play soccer in a park.", "The children are swimming.", 2),
        ("Two children play soccer in a park.", "The children are brothers.", 1),
        ("A woman holds an umbrella in the rain.", "It is raining.", 0),
        ("A woman holds an umbrella in the rain.", "The sun is shining on a dry street.", 2),
        ("A woman holds an umbrella in the rain.", "The woman is waiting for a bus.", 1),
    ]

    def snli(rng, i):
        premise, hypothesis, label = snli_pairs[i % len(snli_pairs)]
        subject = rng.choice(["", " today", " this morning"])
        return {"premise": premise[:-1] + subject + ".", "hypothesis": hypothesis, "label": label}

    tnews = {
        3: ["{t}队在主场三比一战胜对手", "{t}球员宣布退役"],
        4: ["{t}公司发布季度财报，利润增长", "央行宣布下调存款准备金率"],
        8: ["{t}团队发布新一代人工智能芯片", "新款手机搭载{t}自研系统"],
        10: ["{t}市推出冬季旅游线路", "{t}古镇迎来假期客流高峰"],
    }

    def tn(rng, i):
        label = list(tnews)[i % len(tnews)]
        return {"sentence": rng.choice(tnews[label]).format(t=rng.choice(["星屿", "南舟", "云栖", "北岸"])), "label": label, "idx": i}

    cmrc_templates = [
        ("{b}成立于{y}年，总部位于{c}，主要生产{p}。", [("{b}成立于哪一年？", "{y}年"), ("{b}的总部在哪里？", "{c}"), ("{b}主要生产什么？", "{p}")]),
        ("{c}每年{m}举办灯会，吸引大量游客前来观赏花灯。", [("{c}什么时候举办灯会？", "每年{m}"), ("游客来{c}观赏什么？", "花灯")]),
    ]

    def cmrc(rng, i):
        template, questions = rng.choice(cmrc_templates)
        values = {"b": rng.choice(BRANDS), "y": str(rng.randint(1990, 2020)), "c": rng.choice(["杭州", "成都", "南京"]),
                  "p": rng.choice(["蓝牙耳机", "保温杯", "运动鞋"]), "m": rng.choice(["正月", "八月", "十月"])}
        context = template.format(**values)
        question, answer = rng.choice(questions)
        question, answer = question.format(**values), answer.format(**values)
        return {"id": f"c{i}", "context": context, "question": question,
                "answers": {"text": [answer], "answer_start": [context.index(answer)]}}

    ocnli_pairs = [
        ("小王每天早上骑自行车上班。", "小王会骑自行车。", 1),
        ("小王每天早上骑自行车上班。", "小王从来不出门。", 2),
        ("小王每天早上骑自行车上班。", "小王的公司很远。", 0),
        ("这家店的咖啡卖得很好。", "这家店卖咖啡。", 1),
        ("这家店的咖啡卖得很好。", "这家店没有饮料。", 2),
        ("这家店的咖啡卖得很好。", "这家店开了十年。", 0),
    ]

    def ocnli(rng, i):
        first, second, label = ocnli_pairs[i % len(ocnli_pairs)]
        return {"sentence1": rng.choice(["", "据说，"]) + first, "sentence2": second, "label": label}

    for name, make in (("agnews", ag), ("squad_v2", squad), ("snli", snli), ("tnews", tn), ("cmrc2018", cmrc), ("ocnli", ocnli)):
        write_jsonl(root / name / "test.jsonl", [make(rng, i) for i in range(N_TEST)])
        write_jsonl(root / name / "fewshot.jsonl", [make(rng, i + 1000) for i in range(N_FEWSHOT)])


# ---------------------------------------------------------------- FinBen / FLARE tasks


def flare_tasks(root: Path, rng: random.Random) -> None:
    """FPB, FiQA-SA, Headlines and NER samples in the FinBen field layout."""
    companies = ["Northpeak Holdings", "Lumora Bank", "Vantix Energy", "Solvane Foods", "Brightwell Motors"]
    sentiment = {
        "positive": ["{c} reported a 12% rise in quarterly operating profit.", "{c} won a large order from a national retailer."],
        "negative": ["{c} cut its sales outlook and announced layoffs.", "{c} shares fell after a weak trading update."],
        "neutral": ["{c} will publish its interim report on the usual date.", "{c} is headquartered in Harbor City."],
    }
    choices = ["negative", "neutral", "positive"]

    def fpb(rng, i, kind="sentence"):
        label = choices[i % 3]
        text = rng.choice(sentiment[label]).format(c=rng.choice(companies))
        query = (f"Analyze the sentiment of this statement extracted from a financial news article. "
                 f"Provide your answer as either negative, positive or neutral.\nText: {text}\nAnswer:")
        return {"id": f"fpb{i}", "query": query, "answer": label, "text": text, "choices": choices, "gold": i % 3}

    def fiqa(rng, i):
        label = choices[i % 3]
        text = "$" + rng.choice(["NPK", "LUM", "VTX"]) + " " + rng.choice(sentiment[label]).format(c="the company")
        query = f"What is the sentiment of the following financial post: Positive, Negative, or Neutral?\nText: {text}\nAnswer:"
        return {"id": f"fiqasa{i}", "query": query, "answer": label.capitalize(), "text": text, "choices": choices, "gold": i % 3}

    label_types = ["price or not", "price up", "price down"]
    headline_cases = {
        ("price or not", "Yes"): "Gold prices climb to a three-month high",
        ("price or not", "No"): "Gold miners meet to discuss safety rules",
        ("price up", "Yes"): "Gold futures rise 2% on weaker dollar",
        ("price up", "No"): "Gold slips as investors take profits",
        ("price down", "Yes"): "Gold drops below key support level",
        ("price down", "No"): "Gold edges higher in quiet trading",
    }

    def headlines(rng, i):
        label_type = label_types[i % 3]
        answer = "Yes" if (i // 3) % 2 == 0 else "No"
        text = headline_cases[(label_type, answer)]
        query = f"Does the news headline talk about {label_type}? Please choose an answer from {{Yes/No}}.\nText: {text}\nAnswer:"
        return {"id": f"headlines{i}", "query": query, "answer": answer, "text": text,
                "choices": ["No", "Yes"], "gold": int(answer == "Yes"), "label_type": label_type}

    people = [("Anna", "Berg"), ("Omar", "Haddad"), ("Lena", "Moreau")]
    orgs = ["Lumora Bank", "Vantix Energy", "Solvane Foods"]
    places = ["London", "Frankfurt", "Singapore"]

    def ner(rng, i):
        first, last = rng.choice(people)
        org, place = rng.choice(orgs), rng.choice(places)
        words = [first, last, "joined", *org.split(), "in", place, "last", "year", "."]
        tags = ["B-PER", "I-PER", "O", "B-ORG"] + ["I-ORG"] * (len(org.split()) - 1) + ["O", "B-LOC", "O", "O", "O"]
        text = " ".join(words)
        answer = f"{first} {last}, PER\n{org}, ORG\n{place}, LOC"
        query = ("In the sentences extracted from financial agreements in U.S. SEC filings, identify the named "
                 "entities that represent a person ('PER'), an organization ('ORG'), or a location ('LOC'). "
                 f"The required answer format is: 'entity name, entity type'.\nText: {text}\nAnswer:")
        return {"id": f"ner{i}", "query": query, "answer": answer, "text": text, "label": tags}

    for name, make in (("fpb", fpb), ("fiqasa", fiqa), ("headlines", headlines), ("ner", ner)):
        write_jsonl(root / name / "test.jsonl", [make(rng, i) for i in range(N_TEST)])
        write_jsonl(root / name / "fewshot.jsonl", [make(rng, i + 1000) for i in range(N_FEWSHOT)])


# ---------------------------------------------------------------- public release layout

N_PUBLIC = 12


def public_release(root: Path, rng: random.Random) -> None:
    """One folder per test folder of the public EcomGPT release, under its exact name,
    in its exact layout (meta-info.json + test.json, no few-shot file, release quirks
    included: a generation meta-info without label_set, records with ``label_set: [""]``,
    spans without ``type``, QA offsets counted without the "Context: " prefix, and the
    MEPAVE NER meta-info naming another task). The records are invented here."""

    def folder(name, meta, make):
        meta = {"task": name, "label_sep": ", ", **meta}
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "meta-info.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        write_jsonl(path / "test.json", [make(rng, i) for i in range(N_PUBLIC)])

    def instr(text):
        return {"instruction": "### Instruction:\n{sentences}\n" + text + " \n### Response:"}

    topics = ["Food", "Service", "Price", "Ambience", "Anecdotes/Miscellaneous"]
    reviews = {"Food": "the noodles were rich and warm", "Service": "our waiter was quick and kind",
               "Price": "the bill was fair for the portion", "Ambience": "the room was calm and bright",
               "Anecdotes/Miscellaneous": "we came here after a long walk"}

    def review(rng, i):
        chosen = [topics[i % 5]] + ([topics[(i + 2) % 5]] if i % 4 == 0 else [])
        return {"sentences": " and ".join(reviews[t] for t in chosen).capitalize() + ".",
                "labels": {"default": chosen}}

    folder("EN-ABSA-CLS-review_topic_category", {
        "defi": "review topic category", "label_set": {"default": topics}, "label_key": "default",
        "test_prompt": instr("Select category for the above sentences from the following topics: {label_set}.")}, review)

    lenovo_types = ["Attribute", "Brand", "Component", "Product"]
    lenovo_meta = {"defi": "named entity recognition", "label_key": "en",
                   "label_set": {"en": lenovo_types, "cn": ["商品属性", "商品品牌", "组件", "商品名"]}}

    def lenovo(rng, i):
        brand, product = rng.choice(EN_BRANDS), rng.choice(EN_PRODUCTS)
        parts = [("The new ", None), (brand, "Brand"), (" ", None), (product, "Product"), (" has a ", None),
                 ("backlit , spill-proof keyboard" if i % 3 == 0 else "touchpad", "Component"), (" .", None)]
        text, spans = "", []
        for piece, kind in parts:
            if kind:
                spans.append({"start": len(text), "end": len(text) + len(piece), "type": kind, "term": piece})
            text += piece
        return {"sentences": text, "spans": spans}

    folder("EN-Lenovo-NER-NER", {**lenovo_meta, "test_prompt": instr(
        "Extract all named entity with type about {label_set} in the sentence.")}, lenovo)
    folder("EN-Lenovo-Condition_Extract-Condition_Extract", {**lenovo_meta, "defi": "entity span detection",
           "test_prompt": instr("Detect all named entity about {label_set} in the sentence.")}, lenovo)

    def reddit(rng, i):
        product = rng.choice(EN_PRODUCTS)
        answer = f"charge it, then pair it" if i % 2 else f"about {i + 2} hours"
        context = f"I bought the {product} last week. To set it up you {answer} with the app."
        start = context.index(answer)  # offsets into the context, as the release has them
        return {"trace_id": f"sample-{i}", "sentences": f"Context: {context}\nQuestion: How do I use the {product}?",
                "label_set": [""], "spans": [{"term": answer, "start": start, "end": start + len(answer)}]}

    folder("EN-Reddit_QA-Extract-Extract_QA", {"defi": "extractive question answering",
           "test_prompt": instr("Extract spans from context to answer the question.")}, reddit)

    attrs = list(ATTRS)
    mepave_meta = {"defi": "attribute value detection", "label_key": "cn", "label_set": {"cn": attrs}}

    def mepave(rng, i):
        text, spans, _ = attribute_title(rng)
        return {"sentences": text, "label_set": attrs, "spans": spans}

    folder("ZH-MEPAVE-Condition_Extract-attribute_value_detection", {**mepave_meta, "test_prompt": instr(
        "Detect all attribute value about {label_set} in the sentence.")}, mepave)
    # As published, this folder's meta-info names the Condition_Extract task.
    folder("ZH-MEPAVE-NER-attribute_value_extraction", {
        **mepave_meta, "task": "ZH-JAVE-Condition_Extract-attribute_value_detection",
        "test_prompt": instr("Extract all attribute value with attribute name about {label_set} in the sentence.")}, mepave)

    cats = list(CATEGORIES)

    def title(rng, category=None):
        category = category or rng.choice(cats)
        return f"{rng.choice(BRANDS)}{rng.choice(FILLERS)}{rng.choice(CATEGORIES[category])}", category

    def query_item(rng, i):
        item, category = title(rng)
        query = rng.choice(CATEGORIES[category]) if i % 2 == 0 else rng.choice(CATEGORIES[rng.choice(cats)])
        match = query in item
        return {"sentences": f"Query: {query}\nDoc: {item}",
                "labels": {"en": ["match" if match else "not match"], "zh": ["匹配" if match else "不匹配"]}}

    folder("ZH-Multi_CPR-CLS-query_item_matching", {
        "defi": "query item matching", "label_key": "en",
        "label_set": {"en": ["not match", "match"], "zh": ["不匹配", "匹配"]},
        "test_prompt": instr("Determine if query and doc match. Candidate: {label_set}.")}, query_item)

    def product_select(rng, i):
        category = rng.choice(cats)
        noun = rng.choice(CATEGORIES[category])
        others = [title(rng, c)[0] for c in rng.sample([c for c in cats if c != category], 3)]
        best = f"{rng.choice(BRANDS)}{noun}"
        docs = others[:]
        docs.insert(i % 4, best)
        text = f"Query: {noun}\nCandidate Document: {', '.join(docs)}."
        start = text.index(best)
        return {"sentences": text, "label_set": [""], "spans": [{"term": best, "start": start, "end": start + 1}]}

    folder("ZH-Multi_CPR-Extract-product_select_2", {"defi": "product select", "test_prompt": {
        "instruction": "### Instruction:\nSelect documents from the candidates that best match the product query.\n"
                       "{sentences}\nOutput the document content only.\n### Response:"}}, product_select)

    def item_align(rng, i):
        first, category = title(rng)
        same = i % 2 == 0
        second = first if same else title(rng, category)[0]
        return {"sentences": f"Item 1: {first}\nItem 2: {second}",
                "labels": {"en": ["same" if same else "not same"], "zh": ["相同" if same else "不相同"]}}

    folder("ZH-OpenBG_Align-CLS-item_align", {
        "defi": "product item match", "label_key": "en",
        "label_set": {"en": ["not same", "same"], "zh": ["不相同", "相同"]},
        "test_prompt": instr("Determine whether the item 1 and item 2 refer to the same product. "
                             "Candidate labels: {label_set}.")}, item_align)

    fine = [noun for c in cats for noun in CATEGORIES[c]]
    coarse_meta = {"defi": "product item category", "label_set": {"coarse": cats, "fine": fine},
                   "test_prompt": {"instruction": "### Instruction:\n{sentences}\nCategorize product items. "
                                                  "Candidates: {label_set}\n### Response:"}}

    def classify(rng, i):
        category = cats[i % len(cats)]
        noun = rng.choice(CATEGORIES[category])
        return {"sentences": f"{rng.choice(BRANDS)}{rng.choice(FILLERS)}{noun}\t品牌#:#{rng.choice(BRANDS)}",
                "labels": {"coarse": [category], "fine": [noun]}}

    folder("ZH-OpenBG_Align-CLS-item_coarse_classify", {**coarse_meta, "label_key": "coarse"}, classify)
    folder("ZH-OpenBG_Align-CLS-item_fine_classify", {**coarse_meta, "label_key": "fine"}, classify)

    def title_attr(rng, i):
        text, spans, _ = attribute_title(rng)
        span = rng.choice(spans)
        match = i % 2 == 0
        value = span["term"] if match else rng.choice([v for v in ATTRS[span["type"]] if v != span["term"]])
        return {"sentences": f"Title: {text}, Attribute: {span['type']}#:#{value}",
                "labels": {"en": ["match" if match else "not match"], "zh": ["匹配" if match else "不匹配"]}}

    folder("ZH-OpenBG_Align-CLS-title_attribute_matching", {
        "defi": "title attribute matching", "label_key": "en",
        "label_set": {"en": ["not match", "match"], "zh": ["不匹配", "匹配"]},
        "test_prompt": instr("Determine whether the product title and attributes match. Candidate: {label_set}.")},
        title_attr)

    def title_generate(rng, i):
        text, spans, noun = attribute_title(rng)
        attributes = "#;#".join(f"{s['type']}#:#{s['term']}" for s in spans)
        return {"sentences": attributes, "label_set": [""], "spans": [{"term": text, "start": 0, "end": 0}]}

    folder("ZH-OpenBG_Align-Generate-title_generate", {"defi": "product title generation", "test_prompt": {
        "instruction": "{sentences}\nGenerate a product title based on the above attribute information. \n### Response:"}},
        title_generate)


def heldout_text(root: Path, rng: random.Random) -> None:
    """Held-out text for the bits-per-byte tasks: general paragraphs in Chinese and
    English (the demo's general-text generator) and product text (titles with their
    descriptions, and English product lines), ``{"text"}`` per line."""
    from ecomharness.demo.general import general_paragraph

    for folder, zh in (("general_zh", True), ("general_en", False)):
        write_jsonl(root / folder / "test.jsonl", [{"text": general_paragraph(rng, zh)} for _ in range(N_TEST)])
    domain = []
    for i in range(N_TEST):
        if i % 4 == 3:
            domain.append({"text": f"{rng.choice(EN_BRANDS)} {rng.choice(EN_MODIFIERS)} {rng.choice(EN_PRODUCTS)}"})
            continue
        title, spans, noun = attribute_title(rng)
        domain.append({"text": f"{title}\n{description(spans, noun)}"})
    write_jsonl(root / "domain" / "test.jsonl", domain)


def main() -> None:
    """Regenerate every sample, deterministically."""
    rng = random.Random(SEED)
    ecom_tasks(ROOT / "_samples" / "ecominstruct", rng)
    general_tasks(ROOT / "_samples" / "general", rng)
    flare_tasks(ROOT / "_samples" / "finben", rng)
    # Its own generator, so that adding it left every older sample byte-identical.
    public_release(ROOT / "_samples" / "ecominstruct_public", random.Random(SEED + 1))
    heldout_text(ROOT / "_samples" / "heldout", random.Random(SEED + 2))


if __name__ == "__main__":
    main()
