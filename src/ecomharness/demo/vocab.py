"""The product vocabulary shared by the bundled e-commerce task samples and the demo corpus.

Every word here is this project's own. ``tasks/_make_samples.py`` draws the bundled
samples from it and ``ecomharness.demo.shop`` the demo's CPT corpus, so that continual
pre-training on the corpus can show its effect on the tasks (the demo keeps the test
samples' titles out of its corpus).
"""

from __future__ import annotations

import random

CATEGORIES = {
    "服装": ["连衣裙", "衬衫", "卫衣", "牛仔裤", "羽绒服", "针织衫"],
    "鞋靴": ["运动鞋", "帆布鞋", "马丁靴", "凉鞋", "高跟鞋", "板鞋"],
    "美妆": ["口红", "粉底液", "面霜", "眼影盘", "防晒霜", "卸妆水"],
    "数码": ["蓝牙耳机", "充电宝", "机械键盘", "智能手表", "数据线", "平板支架"],
    "食品": ["坚果礼盒", "牛肉干", "挂耳咖啡", "红枣", "燕麦片", "蜂蜜"],
    "家居": ["四件套", "收纳箱", "台灯", "抱枕", "地毯", "保温杯"],
    "母婴": ["纸尿裤", "奶瓶", "婴儿推车", "爬行垫", "儿童餐椅", "湿巾"],
    "运动": ["瑜伽垫", "哑铃", "跳绳", "护膝", "登山包", "泳镜"],
}
BRANDS = ["青禾", "木森", "北岸", "知夏", "云栖", "星屿", "拾光", "南舟"]
FILLERS = ["新款", "加厚", "轻薄", "简约", "便携", "大容量", "韩版", "2024款"]
ATTRS = {
    "颜色": ["红色", "黑色", "白色", "藏青色", "米色", "浅灰色"],
    "材质": ["纯棉", "真丝", "羊毛", "牛皮", "涤纶", "亚麻"],
    "风格": ["复古", "通勤", "休闲", "甜美", "商务", "街头"],
    "适用季节": ["春季", "夏季", "秋季", "冬季"],
}
CLOTHES = ["连衣裙", "衬衫", "卫衣", "针织衫", "风衣", "半身裙"]
EN_BRANDS = ["Acmeflow", "Northpeak", "Lumora", "Vantix", "Brightwell", "Solvane"]
EN_PRODUCTS = ["wireless earbuds", "running shoes", "desk lamp", "travel backpack", "coffee grinder", "yoga mat"]
EN_MODIFIERS = ["lightweight", "waterproof", "foldable", "rechargeable", "ergonomic", "compact"]




def attribute_title(rng: random.Random):
    """A Chinese clothing title with typed attribute spans (start/end offsets)."""
    noun = rng.choice(CLOTHES)
    chosen = rng.sample(list(ATTRS), rng.randint(2, 3))
    text, spans = rng.choice(BRANDS), []
    if rng.random() < 0.5:
        text += rng.choice(FILLERS)
    for kind in chosen:
        value = rng.choice(ATTRS[kind])
        spans.append({"start": len(text), "end": len(text) + len(value), "type": kind, "term": value})
        text += value
    return text + noun, spans, noun


def description(spans, noun) -> str:
    """The one-sentence description of a product, from its attribute spans."""
    values = {s["type"]: s["term"] for s in spans}
    parts = [f"这款{noun}"]
    if "材质" in values:
        parts.append(f"采用{values['材质']}面料")
    if "颜色" in values:
        parts.append(f"{values['颜色']}配色")
    if "风格" in values:
        parts.append(f"{values['风格']}风格")
    if "适用季节" in values:
        parts.append(f"适合{values['适用季节']}穿着")
    return "，".join(parts) + "。"
