"""General-domain text for synthetic corpora: short encyclopedic / news-like paragraphs
in Chinese and English. Every word list is this project's own; the text exercises the
pipeline and the demo, and says nothing about real text."""

from __future__ import annotations

import json
import random

ZH = {
    "general": ["{a}是{b}的重要组成部分，近年来受到广泛关注。", "研究人员在{a}领域取得了新的进展，{b}也随之改变。",
                "{a}位于{b}，历史悠久，文化底蕴深厚。", "关于{a}的讨论持续升温，专家认为{b}值得重视。"],
    "nouns": ["城市交通", "气候变化", "古代建筑", "数字经济", "海洋生物", "传统节日", "科学教育", "乡村振兴", "江南水乡", "高原湖泊"],
}
EN = {
    "general": ["{a} has become an important part of {b} in recent years.", "Researchers studying {a} report new findings about {b}.",
                "The history of {a} is closely tied to {b}.", "Debate about {a} continues, and experts say {b} matters."],
    "nouns": ["public transport", "climate change", "ancient architecture", "the digital economy", "marine life",
              "traditional festivals", "science education", "rural development", "river towns", "mountain lakes"],
}


def general_paragraph(rng: random.Random, zh: bool) -> str:
    """A short general-domain paragraph of two or three sentences."""
    lex = ZH if zh else EN
    sentences = [rng.choice(lex["general"]).format(a=rng.choice(lex["nouns"]), b=rng.choice(lex["nouns"]))
                 for _ in range(rng.randint(2, 3))]
    return ("" if zh else " ").join(sentences)


def write_general(handles: dict, rng: random.Random, n: int) -> None:
    """``n`` general documents, alternately Chinese and English, to ``general_zh``/``general_en``."""
    for i in range(n):
        zh = i % 2 == 0
        handles["general_zh" if zh else "general_en"].write(
            json.dumps({"id": f"g{i}", "text": general_paragraph(rng, zh)}, ensure_ascii=False) + "\n")
