"""Write the bundled samples of the ecom_icl tasks (run from anywhere; seeded).

The records are invented by this script from its own word lists: they are samples for
trying the tasks offline, not benchmark data. Each task gets a few-shot pool and a test
set in the EcomInstruct layout (meta-info.json + JSON Lines test/fewshot files).

    python tasks/ecom_icl/_make_samples.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "samples"
SEED = 20261121

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
ADJECTIVES = ["新款", "加厚", "轻薄", "简约", "复古", "便携", "大容量", "韩版", "纯棉", "防水"]


def _title(rng: random.Random, category: str) -> str:
    noun = rng.choice(CATEGORIES[category])
    adjs = rng.sample(ADJECTIVES, 2)
    return f"{rng.choice(BRANDS)}{adjs[0]}{adjs[1]}{noun}"


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def make_pdc(rng: random.Random, n_test: int = 40, n_fewshot: int = 16) -> None:
    """Product classification: a Chinese product title -> one of eight categories."""
    labels = list(CATEGORIES)
    out = HERE / "pdc"
    meta = {
        "task": "ZH-PDC-CLS-product_classification",
        "defi": "product classification",
        "label_set": {"default": labels},
        "label_key": "default",
        "label_sep": ", ",
        "test_prompt": {
            "instruction": "### Instruction:\n{sentences}\n从以下类别中选择商品所属类别：{label_set}\n### Response:"
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta-info.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")

    def records(n: int) -> list[dict]:
        result = []
        for i in range(n):
            category = labels[i % len(labels)]
            result.append({"sentences": _title(rng, category), "labels": {"default": [category]}})
        rng.shuffle(result)
        return result

    _write_jsonl(out / "test.json", records(n_test))
    _write_jsonl(out / "fewshot.json", records(n_fewshot))


def main() -> None:
    """Regenerate every sample, deterministically."""
    make_pdc(random.Random(SEED))


if __name__ == "__main__":
    main()
