"""Draw the demo benchmark: 10 small synthetic scenes, 2 per category, and their JSONL.

    python demo/make_dataset.py            # writes demo/data/benchmark.jsonl and demo/data/images/*.png

Needs only Pillow. The scenes are simple drawings so the files stay tiny; the edit instructions are real
reasoning edits of the five kinds the benchmark covers.
"""

from __future__ import annotations

import json
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = (96, 64)

# id, category, instruction, description (None: the optional field is left out), drawing, extra keys. The
# human_score values are made up for the demo (its edits come from a random-weight model): they exercise the
# report's agreement figures, and mean nothing about any model.
SAMPLES = [
    ("phys-01", "物理", "Show the scene one second after the glass is pushed off the edge of the table.",
     "A glass standing at the edge of a wooden table.", "glass", {"difficulty": "easy", "human_score": 6.5}),
    ("phys-02", "物理", "Show the ice cube after an hour in the hot sun.",
     "A white ice cube on a plate under a bright sun.", "ice", {"difficulty": "medium", "human_score": 3.0}),
    ("env-01", "环境", "Turn the scene into a snowy winter day.",
     "A green field with a tree under a blue sky.", "tree", {"human_score": 8.0}),
    ("env-02", "环境", "把这条街道变成夜晚的样子，路灯亮起。",
     "白天的街道，有一根路灯。", "street", {"human_score": 5.5}),
    ("soc-01", "社会", "Add people queueing politely in front of the shop door.",
     "A shop front with a closed door.", "shop", {"human_score": 2.5}),
    ("soc-02", "社会", "让两个人互相鞠躬问好。",
     "两个人面对面站着。", "people", {"language": "zh", "human_score": 7.0}),
    ("cau-01", "因果", "Show the plant after two weeks without water.",
     "A green potted plant.", "plant", {"human_score": 4.0}),
    ("cau-02", "因果", "显示这支蜡烛燃烧三个小时之后的样子。",
     "一支点燃的高蜡烛。", "candle", {"language": "zh", "human_score": 9.0}),
    ("ref-01", "指代", "Make the largest circle red.",
     "Three blue circles of different sizes.", "circles", {"human_score": 6.0}),
    ("ref-02", "指代", "Remove the object to the left of the square.",
     None, "shapes", {"human_score": 1.5}),
]


def draw(kind: str) -> Image.Image:
    """One simple scene per kind of drawing."""
    image = Image.new("RGB", SIZE, (200, 225, 250))
    d = ImageDraw.Draw(image)
    shapes = {
        "glass": lambda: (d.rectangle((0, 40, 70, 46), fill=(140, 90, 50)), d.rectangle((58, 22, 68, 40), outline=(60, 60, 90))),
        "ice": lambda: (d.ellipse((70, 4, 90, 24), fill=(255, 210, 0)), d.ellipse((20, 44, 70, 56), fill=(230, 230, 230)),
                        d.rectangle((36, 32, 52, 48), fill=(240, 250, 255), outline=(150, 180, 200))),
        "tree": lambda: (d.rectangle((0, 44, 96, 64), fill=(60, 170, 60)), d.rectangle((44, 26, 50, 46), fill=(110, 70, 30)),
                         d.ellipse((34, 8, 60, 32), fill=(30, 130, 40))),
        "street": lambda: (d.rectangle((0, 48, 96, 64), fill=(90, 90, 90)), d.rectangle((20, 14, 23, 48), fill=(50, 50, 50)),
                           d.ellipse((16, 8, 28, 18), fill=(250, 250, 200))),
        "shop": lambda: (d.rectangle((16, 12, 80, 56), fill=(220, 120, 90)), d.rectangle((42, 30, 56, 56), fill=(90, 60, 40))),
        "people": lambda: (d.ellipse((24, 14, 34, 24), fill=(240, 200, 160)), d.rectangle((24, 24, 34, 50), fill=(40, 80, 160)),
                           d.ellipse((62, 14, 72, 24), fill=(240, 200, 160)), d.rectangle((62, 24, 72, 50), fill=(160, 40, 60))),
        "plant": lambda: (d.polygon([(36, 40), (60, 40), (56, 60), (40, 60)], fill=(170, 90, 50)),
                          d.ellipse((32, 12, 64, 42), fill=(40, 160, 60))),
        "candle": lambda: (d.rectangle((42, 14, 54, 58), fill=(250, 245, 230)), d.ellipse((44, 4, 52, 14), fill=(255, 150, 0))),
        "circles": lambda: (d.ellipse((6, 20, 22, 36), fill=(40, 70, 200)), d.ellipse((30, 12, 62, 44), fill=(40, 70, 200)),
                            d.ellipse((70, 24, 86, 40), fill=(40, 70, 200))),
        "shapes": lambda: (d.polygon([(10, 44), (22, 20), (34, 44)], fill=(30, 160, 90)), d.rectangle((52, 22, 74, 44), fill=(200, 60, 60))),
    }
    shapes[kind]()
    return image


def main() -> None:
    folder = os.path.join(HERE, "data")
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    lines = []
    for sample_id, category, instruction, description, kind, extra in SAMPLES:
        relpath = f"images/{sample_id}.png"
        draw(kind).save(os.path.join(folder, relpath), optimize=True)
        record = {"id": sample_id, "category": category, "image": relpath, "instruction": instruction}
        if description is not None:
            record["description"] = description
        lines.append(json.dumps({**record, **extra}, ensure_ascii=False))
    with open(os.path.join(folder, "benchmark.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} samples to {folder}")


if __name__ == "__main__":
    main()
