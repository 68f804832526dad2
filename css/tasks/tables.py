"""Class names, what each dataset's labels mean for tasks, and the reference task tables.

The tables list dataset label ids per step, step 0 first: VOC and ADE20k as the reference's task
dictionaries (docs/protocol-2d.md#task-tables), S3DIS and ScanNet for both class orders S0 and S1
(docs/tasks.md#tasks, docs/pointcloud-datasets.md#tasks). css.tasks.registry builds a ``Task``
from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

# --- class names (indexed by dataset label) --------------------------------------------------

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

# ADE20k SceneParsing-150 names in label order 1..150; label 0 ("void/other") is trained and
# evaluated as background (docs/protocol-2d.md#label-maps-and-filters).
ADE_CLASSES = ("background",) + (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)

# 3DPC-CISS class ids (id = line index of s3dis_classnames.txt / scannet_classnames.txt),
# docs/pointcloud-data.md#s3dis and #scannet
S3DIS_CLASSES = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)
SCANNET_CLASSES = (
    "unannotated", "wall", "floor", "chair", "table", "desk", "bed", "bookshelf", "sofa", "sink",
    "bathtub", "toilet", "curtain", "counter", "door", "window", "shower curtain", "refrigerator",
    "picture", "cabinet", "otherfurniture",
)


# Cityscapes, domain-incremental (docs/tasks.md#domain-steps): the 19 train ids, and the 21 cities of
# the train and val splits with the published domain ids (id = position).
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)
CITYSCAPES_CITIES = (
    "aachen", "bremen", "darmstadt", "erfurt", "hanover", "krefeld", "strasbourg", "tubingen", "weimar",
    "bochum", "cologne", "dusseldorf", "hamburg", "jena", "monchengladbach", "stuttgart", "ulm", "zurich",
    "frankfurt", "lindau", "munster",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's labels mean for tasks (which ids a task may list, background, quirks)."""

    class_names: tuple[str, ...]
    labels: range  # dataset labels a task may list
    background: int | None  # dataset label that is channel 0; None: synthetic background channel
    void_labels: tuple[int, ...] = ()  # always mapped to ignore_index (ScanNet unannotated)
    # ADE: no ignore label in training (docs/protocol-2d.md#label-maps-and-filters)
    train_ignore_as_background: bool = False
    # ADE: the background label is "void/other" (what MiB's convention ignores at test)
    void_background: bool = False
    # a domain-incremental dataset: the names of its domains (its tasks list domain ids)
    domains: tuple[str, ...] = ()


DATASETS: dict[str, DatasetInfo] = {
    "voc": DatasetInfo(VOC_CLASSES, range(0, 21), background=0),
    "ade": DatasetInfo(ADE_CLASSES, range(0, 151), background=0, train_ignore_as_background=True,
                       void_background=True),
    "s3dis": DatasetInfo(S3DIS_CLASSES, range(0, 13), background=None),
    # unannotated points are a void label, ignored rather than background (docs/tasks.md#label-maps;
    # the reference's handling: docs/pointcloud-datasets.md#unannotated)
    "scannet": DatasetInfo(SCANNET_CLASSES, range(1, 21), background=None, void_labels=(0,)),
    "cityscapes_domain": DatasetInfo(CITYSCAPES_CLASSES, range(0, len(CITYSCAPES_CITIES)), background=None,
                                     domains=CITYSCAPES_CITIES),
}


# --- reference task tables --------------------------------------------------------------------

def _one_per_step(base: Sequence[int], novel: Sequence[int]) -> list[list[int]]:
    """[base, [n_1], [n_2], ...]: the base group followed by one step per novel class."""
    return [list(base)] + [[label] for label in novel]


# Random-order "15-1" variants: (step 0, the classes of steps 1..5, one per step)
# (docs/protocol-2d.md#task-tables)
_VOC_RANDOM_ORDERS: dict[str, tuple[list[int], list[int]]] = {
    "15-5s_b": ([0, 12, 9, 20, 7, 15, 8, 14, 16, 5, 19, 4, 1, 13, 2, 11], [17, 3, 6, 18, 10]),
    "15-5s_c": ([0, 13, 19, 15, 17, 9, 8, 5, 20, 4, 3, 10, 11, 18, 16, 7], [12, 14, 6, 1, 2]),
    "15-5s_d": ([0, 15, 3, 2, 12, 14, 18, 20, 16, 11, 1, 19, 8, 10, 7, 17], [6, 5, 13, 9, 4]),
    "15-5s_e": ([0, 7, 5, 3, 9, 13, 12, 14, 19, 10, 2, 1, 4, 16, 8, 17], [15, 18, 6, 11, 20]),
    "15-5s_f": ([0, 7, 13, 5, 11, 9, 2, 15, 12, 14, 3, 20, 1, 16, 4, 18], [8, 6, 10, 19, 17]),
    "15-5s_g": ([0, 7, 5, 9, 1, 15, 18, 14, 3, 20, 10, 4, 19, 11, 17, 16], [12, 8, 6, 2, 13]),
    "15-5s_h": ([0, 12, 9, 19, 6, 4, 10, 5, 18, 14, 15, 16, 3, 8, 7, 11], [13, 2, 20, 17, 1]),
    "15-5s_i": ([0, 13, 10, 15, 8, 7, 19, 4, 3, 16, 12, 14, 11, 5, 20, 6], [2, 18, 9, 17, 1]),
    "15-5s_j": ([0, 1, 14, 9, 5, 2, 15, 8, 20, 6, 16, 18, 7, 11, 10, 19], [3, 4, 17, 12, 13]),
    "15-5s_k": ([0, 16, 13, 1, 11, 12, 18, 6, 14, 5, 3, 7, 9, 20, 19, 15], [4, 2, 10, 8, 17]),
    "15-5s_l": ([0, 10, 7, 6, 19, 16, 8, 17, 1, 14, 4, 9, 3, 15, 11, 12], [2, 18, 20, 13, 5]),
    "15-5s_m": ([0, 18, 4, 14, 17, 12, 10, 7, 3, 9, 1, 8, 15, 6, 13, 2], [5, 11, 20, 16, 19]),
    "15-5s_n": ([0, 5, 4, 13, 18, 14, 10, 19, 15, 7, 9, 3, 2, 8, 16, 20], [1, 12, 11, 6, 17]),
    "15-5s_o": ([0, 9, 12, 13, 18, 7, 1, 15, 17, 10, 8, 4, 5, 20, 16, 6], [14, 19, 11, 2, 3]),
    "15-5s_p": ([0, 9, 12, 13, 18, 2, 11, 15, 17, 10, 8, 4, 5, 20, 16, 6], [14, 19, 1, 7, 3]),
    "15-5s_q": ([0, 3, 14, 13, 18, 2, 11, 15, 17, 10, 8, 4, 5, 20, 16, 6], [12, 19, 1, 7, 9]),
    "15-5s_r": ([0, 3, 14, 13, 1, 2, 11, 15, 17, 7, 8, 4, 5, 9, 16, 19], [12, 6, 18, 10, 20]),
    "15-5s_s": ([0, 3, 14, 6, 1, 2, 11, 12, 17, 7, 20, 4, 5, 9, 16, 19], [15, 13, 18, 10, 8]),
    "15-5s_t": ([0, 3, 15, 13, 1, 2, 11, 18, 17, 7, 20, 8, 5, 9, 16, 19], [14, 6, 12, 10, 4]),
    "15-5s_u": ([0, 3, 15, 13, 14, 6, 11, 18, 17, 7, 20, 8, 4, 9, 16, 10], [1, 2, 12, 19, 5]),
    "15-5s_v": ([0, 1, 2, 12, 14, 6, 19, 18, 17, 5, 20, 8, 4, 9, 16, 10], [3, 15, 13, 11, 7]),
    "15-5s_w": ([0, 1, 2, 12, 14, 13, 19, 18, 7, 11, 20, 8, 4, 9, 16, 10], [3, 15, 6, 5, 17]),
}


def _voc_tables() -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """VOC reference tasks and aliases (docs/protocol-2d.md#task-tables)."""
    tables = {
        "offline": [list(range(21))],
        "19-1": [list(range(20)), [20]],
        "15-5": [list(range(16)), list(range(16, 21))],
        "15-5s": _one_per_step(range(16), range(16, 21)),
        "10-1": _one_per_step(range(11), range(11, 21)),
    }
    # MiB's own orders (docs/protocol.md#mib-conventions): bottle (5) learnt last; 10 + 5 + 5
    tables["19-1b"] = [[label for label in range(21) if label != 5], [5]]
    tables["10-5-5"] = [list(range(11)), list(range(11, 16)), list(range(16, 21))]
    aliases = {"15-1": "15-5s"}  # 15-5s is the setting the papers call "15-1"
    for name, (base, novel) in _VOC_RANDOM_ORDERS.items():
        tables[name] = _one_per_step(base, novel)
        aliases["15-1" + name[len("15-5s"):]] = name
    return tables, aliases


# MiB's ADE20k class orders "b" and "c" (docs/protocol.md#mib-conventions): the 100 base classes (with
# label 0) and the 50 novel ones of each order; 100-10 learns the novel ones in the groups below,
# 50-50 learns the base 50 of a second order first.
_ADE_B_BASE = [0, 1, 3, 5, 6, 8, 9, 10, 12, 13, 14, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29, 31, 32, 33, 34, 36,
               38, 39, 40, 42, 43, 44, 45, 46, 47, 48, 49, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 69, 70, 71, 74, 75,
               76, 77, 80, 81, 82, 84, 86, 87, 90, 91, 93, 95, 96, 99, 100, 101, 103, 104, 105, 106, 107, 109, 113,
               116, 117, 119, 120, 121, 123, 125, 126, 128, 129, 130, 131, 132, 133, 134, 135, 136, 140, 142, 143,
               144, 147, 148, 149, 150]
_ADE_B_NOVEL = [2, 4, 7, 11, 15, 16, 17, 20, 30, 35, 37, 41, 50, 51, 52, 59, 64, 65, 66, 67, 68, 72, 73, 78, 79, 83,
                85, 88, 89, 92, 94, 97, 98, 102, 108, 110, 111, 112, 114, 115, 118, 122, 124, 127, 137, 138, 139,
                141, 145, 146]
_ADE_C_BASE = [0, 1, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 20, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
               35, 36, 37, 40, 41, 43, 44, 45, 46, 48, 50, 52, 54, 56, 57, 61, 63, 65, 66, 67, 68, 69, 70, 71, 74, 76,
               77, 78, 79, 81, 82, 83, 84, 85, 86, 87, 90, 94, 95, 96, 97, 98, 99, 102, 105, 106, 109, 110, 111,
               112, 114, 115, 118, 119, 120, 121, 123, 124, 126, 128, 129, 132, 133, 134, 135, 136, 138, 139, 142,
               143, 144, 146, 147, 149]
_ADE_C_NOVEL = [2, 3, 4, 7, 15, 18, 21, 22, 38, 39, 42, 47, 49, 51, 53, 55, 58, 59, 60, 62, 64, 72, 73, 75, 80, 88,
                89, 91, 92, 93, 100, 101, 103, 104, 107, 108, 113, 116, 117, 122, 125, 127, 130, 131, 137, 140, 141,
                145, 148, 150]
_ADE_MIB_ORDERS: dict[str, list[list[int]]] = {
    "100-50b": [_ADE_B_BASE, _ADE_B_NOVEL],
    "100-50c": [_ADE_C_BASE, _ADE_C_NOVEL],
    "100-10b": [_ADE_B_BASE, [11, 16, 50, 64, 66, 73, 89, 92, 145, 146], [30, 37, 51, 52, 72, 85, 98, 114, 115, 138],
                [2, 35, 65, 97, 110, 111, 112, 118, 124, 141], [4, 7, 15, 41, 67, 78, 79, 88, 108, 139],
                [17, 20, 59, 68, 83, 94, 102, 122, 127, 137]],
    "100-10c": [_ADE_C_BASE, [3, 4, 7, 18, 39, 64, 73, 101, 113, 137], [47, 51, 55, 60, 62, 80, 116, 127, 140, 148],
                [22, 42, 49, 58, 59, 89, 91, 92, 108, 125], [2, 38, 53, 100, 104, 117, 130, 131, 141, 145],
                [15, 21, 72, 75, 88, 93, 103, 107, 122, 150]],
    "50b": [[0, 1, 9, 14, 18, 22, 24, 25, 27, 28, 29, 32, 38, 42, 45, 46, 47, 48, 49, 54, 56, 58, 61, 62, 63, 69, 74,
             75, 76, 77, 81, 82, 84, 90, 93, 96, 100, 103, 104, 109, 117, 119, 121, 123, 128, 129, 130, 134, 135, 136,
             144],
            [3, 5, 6, 8, 10, 12, 13, 19, 21, 23, 26, 31, 33, 34, 36, 39, 40, 43, 44, 53, 55, 57, 60, 70, 71, 80, 86,
             87, 91, 95, 99, 101, 105, 106, 107, 113, 116, 120, 125, 126, 131, 132, 133, 140, 142, 143, 147, 148,
             149, 150],
            _ADE_B_NOVEL],
    "50c": [[0, 5, 10, 11, 12, 13, 16, 17, 19, 20, 23, 27, 28, 30, 31, 32, 33, 37, 43, 46, 52, 56, 57, 65, 66, 69, 70,
             74, 76, 77, 79, 82, 83, 86, 87, 105, 109, 110, 111, 119, 128, 129, 132, 133, 134, 138, 142, 143, 144,
             146, 147],
            [1, 6, 8, 9, 14, 24, 25, 26, 29, 34, 35, 36, 40, 41, 44, 45, 48, 50, 54, 61, 63, 67, 68, 71, 78, 81, 84,
             85, 90, 94, 95, 96, 97, 98, 99, 102, 106, 112, 114, 115, 118, 120, 121, 123, 124, 126, 135, 136, 139,
             149],
            _ADE_C_NOVEL],
}


def _ade_tables() -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """ADE20k reference tasks and aliases (docs/protocol-2d.md#task-tables)."""

    def chunks(start: int, stop: int, size: int) -> list[list[int]]:
        return [list(range(i, min(i + size, stop))) for i in range(start, stop, size)]

    tables = {
        "offline": [list(range(151))],
        "100-50": [list(range(101)), list(range(101, 151))],
        "100-10": [list(range(101))] + chunks(101, 151, 10),
        "100-5": [list(range(101))] + chunks(101, 151, 5),
        "50": [list(range(51)), list(range(51, 101)), list(range(101, 151))],
    }
    tables.update(_ADE_MIB_ORDERS)
    return tables, {"50-50": "50", "50-50b": "50b", "50-50c": "50c"}


# docs/tasks.md#tasks: "m-n" = first m classes of the order are base, then steps of n novel classes
# (12-1, 10-3, 8-5 and 19-1, 17-3, 15-5 have one incremental step; 8-1 and 15-1 learn the same
# novel classes as 8-5 and 15-5, one class per step).
_SPLITS_3D = {
    "s3dis": {"12-1": (12, 1), "10-3": (10, 3), "8-5": (8, 5), "8-1": (8, 1)},
    "scannet": {"19-1": (19, 1), "17-3": (17, 3), "15-5": (15, 5), "15-1": (15, 1)},
}


def _class_orders_3d(dataset: str) -> dict[str, list[int]]:
    """S0 = dataset id order, S1 = alphabetical order of class names (docs/tasks.md#tasks)."""
    info = DATASETS[dataset]
    ids = list(info.labels)
    return {"s0": ids, "s1": sorted(ids, key=lambda label: info.class_names[label])}


def _pointcloud_tables(dataset: str) -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """S3DIS / ScanNet tasks for both class orders; the plain name means order S0."""
    orders = _class_orders_3d(dataset)
    tables = {"offline": [orders["s0"]]}
    aliases = {}
    for split, (base, step_size) in _SPLITS_3D[dataset].items():
        for order_name, order in orders.items():
            novel = order[base:]
            tables[f"{split}_{order_name}"] = [order[:base]] + [
                novel[i:i + step_size] for i in range(0, len(novel), step_size)
            ]
        aliases[split] = f"{split}_s0"
    return tables, aliases


def _cityscapes_domain_tables() -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """Cityscapes domain tasks over the 21 city ids (docs/tasks.md#domain-steps): 11 cities, then one
    or five per step, or one city per step."""
    cities = range(len(CITYSCAPES_CITIES))
    tables = {
        "offline": [list(cities)],
        "11-5": [list(range(11)), list(range(11, 16)), list(range(16, 21))],
        "11-1": _one_per_step(range(11), range(11, 21)),
        "1-1": [[city] for city in cities],
    }
    return tables, {}


def _build_registry() -> dict[str, tuple[dict[str, list[list[int]]], dict[str, str]]]:
    return {
        "voc": _voc_tables(),
        "ade": _ade_tables(),
        "s3dis": _pointcloud_tables("s3dis"),
        "scannet": _pointcloud_tables("scannet"),
        "cityscapes_domain": _cityscapes_domain_tables(),
    }


TABLES = _build_registry()
