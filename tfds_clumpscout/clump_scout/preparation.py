"""Catalogue preparation for the `clump_scout/sdss` config: parse, filter, split.

Pure Python/numpy (cutouts are read by `gsfc_tf.images`, with Pillow/astropy); no TensorFlow,
so every rule is unit-testable on its own.

The rules follow the authors' `Faster-RCNN-Comparison/Data_preparation.ipynb`
(ou-astrophysics/Faster-R-CNN-for-Galaxy-Zoo-Clump-Scout), restated in crop pixels:

* crop: the central `crop_size` square of the `cutout_size` cutout (100..300 of 400).
* bulge: a box whose centre lies within `bulge_radius_px` of the crop centre on *both*
  axes is a bulge mark (notebook: ``|centre_normed - 0.5| < 0.02`` of the 400 px image,
  i.e. 8 px).
* edge: a box is kept only if *all four edges* lie strictly more than `edge_margin_px`
  inside the crop (notebook ``pad_selector``: ``x1_normed > 0.25 + 0.05`` etc., i.e. 20 px
  of the 400 px image); so a box merely touching the margin is dropped.
* duplicates: a kept box identical to an earlier one (same galaxy, crop-pixel box and
  class, in any catalogue) is dropped; boxes of one galaxy from several catalogues merge.
* galaxies left with no box are dropped (the notebook keeps only rows that survive, so
  such a galaxy disappears from its catalogue); the catalogues here list no empty
  galaxies, hence there are no negatives.
* classes: `clump` (0) and `odd_clump` (1); in the consensus table a box is odd if
  ``mean_tool > 0.5`` and an improbable clump (``false_pos_prob > 0.7``) is folded into odd.
* split: 70/20/10 train/validation/test, stratified on whether a galaxy has more odd
  clumps than normal ones, seed 75 (the notebook's ``random_state``).

Every catalogue row ends as `kept` or dropped with one reason (see `DROP_REASONS`,
checked in that order: the first that applies wins); `PreparationReport` records them all,
with the form each catalogue was read in and a fingerprint of the manual dir's files.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from gsfc_tf import conventions
from gsfc_tf.images import FITS_SUFFIXES, LUPTON_Q, LUPTON_STRETCH, UnreadableImageError, read_image

__all__ = [
    "CATALOGUE_FORMS",
    "CUTOUT_SUFFIXES",
    "DROP_REASONS",
    "KEPT",
    "BoxRow",
    "Galaxy",
    "PreparationReport",
    "PreparationRules",
    "box_status",
    "center_crop",
    "detect_form",
    "drop_duplicates",
    "drop_galaxies",
    "find_catalogues",
    "fingerprint",
    "fingerprint_difference",
    "index_cutouts",
    "kept_galaxies",
    "load_cutout",
    "read_catalogue",
    "stratified_split",
    "stratum",
]

# Accepted catalogue forms and the columns each needs.
CATALOGUE_FORMS: Mapping[str, tuple[str, ...]] = {
    # The authors' per-box table (../shared/data/clumpscout_labels): crop pixels, label 1|2.
    "crop": ("local_ids", "label", "x1", "x2", "y1", "y2"),
    # The full consensus table: cutout (400 px) pixels, vote fractions.
    "consensus": ("local_ids", "x1", "x2", "y1", "y2", "mean_tool", "false_pos_prob"),
}
_METADATA_COLUMNS = ("ra", "dec", "redshift")

KEPT = "kept"
DROP_REASONS = (
    "bad_id",  # empty local id
    "bad_label",  # label not 1|2, or vote fractions missing
    "bad_coordinates",  # NaN, non-numeric, inverted or zero-size box
    "outside_crop",  # box wholly outside the crop
    "bulge",
    "edge",
    "duplicate",  # same galaxy, box and class as an earlier kept row (any catalogue)
    "missing_image",
    "unreadable_image",  # corrupt file, unsupported layout or size
)
# Cutout file suffixes of the manual dir, matched case-insensitively.
CUTOUT_SUFFIXES = (".png", ".jpg", ".jpeg", *FITS_SUFFIXES)


@dataclasses.dataclass(frozen=True)
class PreparationRules:
    """Thresholds of the paper's preparation.

    Attributes:
        crop_size: side of the model's square crop, px.
        cutout_size: side of the SDSS cutout the crop is taken from, px.
        bulge_radius_px: boxes centred within this distance of the crop centre on both
            axes are bulge marks.
        edge_margin_px: boxes with any edge within this distance of the crop edge are
            dropped (0 disables the rule; boxes are then clipped to the crop).
        odd_mean_tool: consensus boxes with ``mean_tool`` above this are odd.
        improbable_false_pos_prob: consensus boxes with ``false_pos_prob`` above this
            are improbable clumps, folded into odd.
        split_fractions: train, validation, test fractions of galaxies.
        split_seed: seed of the stratified split.
        lupton_q: ``Q`` of `astropy.visualization.make_lupton_rgb` for FITS cutouts.
        lupton_stretch: ``stretch`` of `make_lupton_rgb` (in the FITS data units).
    """

    crop_size: int = conventions.CROP_SIZE
    cutout_size: int = conventions.CUTOUT_SIZE
    bulge_radius_px: float = 8.0
    edge_margin_px: float = 20.0
    odd_mean_tool: float = 0.5
    improbable_false_pos_prob: float = 0.7
    split_fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    split_seed: int = 75
    lupton_q: float = LUPTON_Q
    lupton_stretch: float = LUPTON_STRETCH

    def __post_init__(self):
        if not 0 < self.crop_size <= self.cutout_size:
            raise ValueError(
                f"Need 0 < crop_size <= cutout_size, got {self.crop_size}, {self.cutout_size}."
            )
        if (self.cutout_size - self.crop_size) % 2:
            raise ValueError(
                "cutout_size - crop_size must be even for a central crop, got "
                f"{self.cutout_size} - {self.crop_size}."
            )
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0:
            raise ValueError(f"split_fractions must be 3 non-negative floats, got {self.split_fractions}.")
        if not math.isclose(sum(self.split_fractions), 1.0):
            raise ValueError(f"split_fractions must sum to 1, got {self.split_fractions}.")

    @property
    def crop_offset(self) -> int:
        """Pixel offset of the crop inside the cutout (100 for 200 of 400)."""
        return conventions.crop_offset(self.cutout_size, self.crop_size)


@dataclasses.dataclass(frozen=True)
class BoxRow:
    """One catalogue row after normalisation.

    Attributes:
        row_id: ``"<file name>:<line number>"``, unique across catalogues.
        local_id: image id (the cutout's file stem).
        box_yxyx: ``(y1, x1, y2, x2)`` in crop pixels (clipped to the crop when kept).
        class_id: 0 clump, 1 odd clump, -1 unknown.
        status: `KEPT` or one of `DROP_REASONS`.
        ra, dec, redshift: galaxy metadata from the row, NaN when absent.
    """

    row_id: str
    local_id: str
    box_yxyx: tuple[float, float, float, float]
    class_id: int
    status: str
    ra: float = math.nan
    dec: float = math.nan
    redshift: float = math.nan


@dataclasses.dataclass(frozen=True)
class Galaxy:
    """A galaxy with its kept boxes.

    Attributes:
        local_id: image id.
        boxes_yxyx: float32 [N, 4] absolute crop pixels.
        labels: int64 [N] class ids.
        ra, dec, redshift: metadata, NaN when unknown.
    """

    local_id: str
    boxes_yxyx: np.ndarray
    labels: np.ndarray
    ra: float
    dec: float
    redshift: float


def detect_form(columns: Iterable[str], requested: str = "auto") -> str:
    """Decides a catalogue's form by one rule: a ``label`` column means the crop form.

    With ``requested="auto"`` a header with a ``label`` column is the per-box crop form
    (whatever else it carries, e.g. ``mean_tool``), and one without is the consensus form;
    ``"crop"`` or ``"consensus"`` forces that form. Either way every column of the form
    must be present: the form is never guessed from what happens to fit.

    Args:
        columns: header of the CSV.
        requested: ``"auto"`` or a key of `CATALOGUE_FORMS`.

    Returns:
        A key of `CATALOGUE_FORMS`.

    Raises:
        ValueError: unknown `requested`, or the form's missing columns.
    """
    if requested not in ("auto", *CATALOGUE_FORMS):
        raise ValueError(f"catalogue_form must be 'auto', 'crop' or 'consensus', got {requested!r}.")
    present = set(columns)
    lacks = {form: [c for c in cols if c not in present] for form, cols in CATALOGUE_FORMS.items()}
    if requested != "auto":
        form, why = requested, f"catalogue_form={requested!r} needs {list(CATALOGUE_FORMS[requested])}"
    elif "label" in present:
        form, why = "crop", f"a 'label' column means the crop form {list(CATALOGUE_FORMS['crop'])}"
    else:
        form, why = "consensus", None
    if not lacks[form]:
        return form
    if why is None:  # no label: the user may have meant either form, so name both.
        why = "; ".join(f"{f} form {list(cols)} lacks {lacks[f]}" for f, cols in CATALOGUE_FORMS.items())
        raise ValueError(f"Catalogue columns {sorted(present)} match no accepted form: {why}.")
    raise ValueError(f"Catalogue columns {sorted(present)}: {why}, lacks {lacks[form]}.")


def _to_float(value: str | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def box_status(
    x1: float, x2: float, y1: float, y2: float, rules: PreparationRules
) -> tuple[str, tuple[float, float, float, float]]:
    """Applies the box rules to one box given in crop pixels.

    Checked in order: bad coordinates, wholly outside the crop, bulge, edge.

    Args:
        x1, x2, y1, y2: box corners in crop pixels (``x1 < x2``, ``y1 < y2``).
        rules: thresholds.

    Returns:
        ``(status, (y1, x1, y2, x2))``; for kept boxes the box is clipped to the crop.
    """
    box = (y1, x1, y2, x2)
    if not all(map(math.isfinite, box)) or x2 <= x1 or y2 <= y1:
        return "bad_coordinates", box
    size = rules.crop_size
    if x2 <= 0 or y2 <= 0 or x1 >= size or y1 >= size:
        return "outside_crop", box
    half = size / 2
    if abs(0.5 * (x1 + x2) - half) < rules.bulge_radius_px and abs(
        0.5 * (y1 + y2) - half
    ) < rules.bulge_radius_px:
        return "bulge", box
    margin = rules.edge_margin_px
    if margin > 0 and not (x1 > margin and y1 > margin and x2 < size - margin and y2 < size - margin):
        return "edge", box
    return KEPT, (max(y1, 0.0), max(x1, 0.0), min(y2, float(size)), min(x2, float(size)))


def _class_id(form: str, record: Mapping[str, str], rules: PreparationRules) -> int:
    if form == "crop":
        # The crop catalogue's labels 1|2 are the model's 1-based class ids.
        class_id = conventions.from_model_class(_to_float(record["label"]))
        return int(class_id) if class_id in range(len(conventions.CLASS_NAMES)) else -1
    mean_tool = _to_float(record["mean_tool"])
    false_pos_prob = _to_float(record["false_pos_prob"])
    if not (math.isfinite(mean_tool) and math.isfinite(false_pos_prob)):
        return -1
    odd = mean_tool > rules.odd_mean_tool or false_pos_prob > rules.improbable_false_pos_prob
    return int(odd)


def read_catalogue(
    path: str | Path, rules: PreparationRules, *, form: str = "auto"
) -> tuple[str, list[BoxRow]]:
    """Reads one catalogue CSV (either form, see `detect_form`) into rows with a status each.

    Args:
        path: CSV with a header row, UTF-8 with or without a byte-order mark.
        rules: thresholds.
        form: ``"auto"``, ``"crop"`` or ``"consensus"`` (see `detect_form`).

    Returns:
        (the form the file was read in, one `BoxRow` per data row in file order).

    Raises:
        ValueError: the header lacks the form's columns (names the file and the columns).
    """
    path = Path(path)
    # utf-8-sig: spreadsheet programs start CSVs with a BOM, which would rename `local_ids`.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            form = detect_form(reader.fieldnames or (), form)
        except ValueError as err:
            raise ValueError(f"{path.name}: {err}") from None
        # Consensus boxes are in cutout pixels, crop boxes already in crop pixels: the crop is
        # a window on the cutout at `crop_offset`.
        offset = rules.crop_offset if form == "consensus" else None
        rows = []
        for line, record in enumerate(reader, start=2):
            local_id = (record["local_ids"] or "").strip()
            box_yxyx = [_to_float(record[k]) for k in ("y1", "x1", "y2", "x2")]
            y1, x1, y2, x2 = map(float, conventions.to_window(box_yxyx, offset_yx=offset))
            status, box = box_status(x1, x2, y1, y2, rules)
            class_id = _class_id(form, record, rules)
            if not local_id:
                status = "bad_id"
            elif class_id < 0:
                status = "bad_label"
            meta = {k: _to_float(record.get(k)) for k in _METADATA_COLUMNS}
            rows.append(BoxRow(f"{path.name}:{line}", local_id, box, class_id, status, **meta))
    return form, rows


def drop_duplicates(rows: Sequence[BoxRow]) -> list[BoxRow]:
    """Marks kept rows that repeat an earlier kept row's galaxy, box and class as `duplicate`.

    Rows are compared in crop pixels after reading, so the same box given in both catalogue
    forms is a duplicate too. The first occurrence (in the order given) stays kept.

    Args:
        rows: catalogue rows of every catalogue, in reading order.

    Returns:
        The rows, with repeated kept rows re-labelled; other rows unchanged.
    """
    seen = set()
    out = []
    for r in rows:
        key = (r.local_id, r.box_yxyx, r.class_id)
        if r.status == KEPT and key in seen:
            r = dataclasses.replace(r, status="duplicate")
        elif r.status == KEPT:
            seen.add(key)
        out.append(r)
    return out


def drop_galaxies(rows: Sequence[BoxRow], reasons: Mapping[str, str]) -> list[BoxRow]:
    """Marks the kept rows of the given galaxies as dropped.

    Args:
        rows: catalogue rows.
        reasons: ``{local_id: reason}``, e.g. ``"missing_image"``.

    Returns:
        The rows, with kept rows of those galaxies re-labelled; other rows unchanged.
    """
    return [
        dataclasses.replace(r, status=reasons[r.local_id])
        if r.status == KEPT and r.local_id in reasons
        else r
        for r in rows
    ]


def _first_finite(values: Iterable[float]) -> float:
    return next((v for v in values if math.isfinite(v)), math.nan)


def kept_galaxies(rows: Sequence[BoxRow]) -> dict[str, Galaxy]:
    """Groups kept rows by galaxy; galaxies with no kept row are absent.

    Args:
        rows: catalogue rows.

    Returns:
        ``{local_id: Galaxy}`` in sorted id order.
    """
    grouped: dict[str, list[BoxRow]] = {}
    for r in rows:
        if r.status == KEPT:
            grouped.setdefault(r.local_id, []).append(r)
    return {
        gid: Galaxy(
            local_id=gid,
            boxes_yxyx=np.asarray([r.box_yxyx for r in rs], np.float32).reshape(-1, 4),
            labels=np.asarray([r.class_id for r in rs], np.int64),
            ra=_first_finite(r.ra for r in rs),
            dec=_first_finite(r.dec for r in rs),
            redshift=_first_finite(r.redshift for r in rs),
        )
        for gid, rs in sorted(grouped.items())
    }


def stratum(labels: np.ndarray) -> int:
    """Stratum of a galaxy: 1 if it has more odd clumps than normal ones, else 0."""
    labels = np.asarray(labels)
    return int(np.sum(labels == 1) > np.sum(labels == 0))


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder apportionment of n items (ties go to the earlier split)."""
    exact = [n * f for f in fractions]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(fractions)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def stratified_split(
    galaxy_ids: Sequence[str],
    strata: Sequence[int],
    *,
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
    names: Sequence[str] = ("train", "validation", "test"),
    seed: int = 75,
) -> dict[str, list[str]]:
    """Seeded split of galaxies keeping each stratum's share in every split.

    The result depends only on the set of (id, stratum) pairs and the seed, not on input
    order: ids are sorted within each stratum before a seeded permutation.

    Args:
        galaxy_ids: unique ids, length G.
        strata: stratum of each id, length G.
        fractions: fraction of each split, summing to 1.
        names: split names, one per fraction.
        seed: seed of the permutation.

    Returns:
        ``{name: sorted ids}``; together the lists partition `galaxy_ids`.
    """
    if len(galaxy_ids) != len(strata):
        raise ValueError(f"Got {len(galaxy_ids)} ids but {len(strata)} strata.")
    if len(set(galaxy_ids)) != len(galaxy_ids):
        raise ValueError("galaxy_ids must be unique.")
    if len(fractions) != len(names) or not math.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"Need one non-negative fraction per name summing to 1, got {fractions} for {names}.")
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {name: [] for name in names}
    by_stratum: dict[int, list[str]] = {}
    for gid, s in zip(galaxy_ids, strata):
        by_stratum.setdefault(int(s), []).append(gid)
    for s in sorted(by_stratum):
        members = sorted(by_stratum[s])
        order = rng.permutation(len(members))
        start = 0
        for name, count in zip(names, _allocate(len(members), fractions)):
            out[name].extend(members[i] for i in order[start : start + count])
            start += count
    return {name: sorted(ids) for name, ids in out.items()}


@dataclasses.dataclass
class PreparationReport:
    """Where every catalogue row went.

    Attributes:
        rules: thresholds used.
        catalogues: ``{catalogue file name: form it was read in}``.
        fingerprint: the manual dir's files (see `fingerprint`).
        rows: ``[{"row", "local_id", "status", "split"}]``, one per catalogue row;
            ``split`` is set for kept rows only.
        splits: ``{split name: number of galaxies}``.
    """

    rules: dict
    catalogues: dict[str, str]
    fingerprint: dict
    rows: list[dict]
    splits: dict[str, int]

    @classmethod
    def build(
        cls,
        rows: Sequence[BoxRow],
        splits: Mapping[str, Sequence[str]],
        *,
        rules: PreparationRules,
        catalogues: Mapping[str, str],
        fingerprint: Mapping,
    ) -> PreparationReport:
        """Collects the report from final rows and the split assignment."""
        split_of = {gid: name for name, ids in splits.items() for gid in ids}
        return cls(
            rules={**dataclasses.asdict(rules), "split_fractions": list(rules.split_fractions)},
            catalogues=dict(catalogues),
            fingerprint=dict(fingerprint),
            rows=[
                {
                    "row": r.row_id,
                    "local_id": r.local_id,
                    "status": r.status,
                    "split": split_of.get(r.local_id) if r.status == KEPT else None,
                }
                for r in rows
            ],
            splits={name: len(ids) for name, ids in splits.items()},
        )

    @property
    def counts(self) -> dict[str, int]:
        """Rows per status: ``kept`` and each drop reason (zeros included)."""
        counted = Counter(r["status"] for r in self.rows)
        return {status: counted.get(status, 0) for status in (KEPT, *DROP_REASONS)}

    def summary(self) -> str:
        """One-line account of the rows and splits, e.g. ``"3 catalogue rows: kept 1, dropped 2
        (edge 1, missing_image 1); galaxies per split: train 1, validation 0, test 0."``"""
        counts = self.counts
        kept = counts.pop(KEPT)
        reasons = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        dropped = f"dropped {sum(counts.values())}" + (f" ({reasons})" if reasons else "")
        splits = ", ".join(f"{k} {v}" for k, v in self.splits.items())
        return f"{len(self.rows)} catalogue rows: kept {kept}, {dropped}; galaxies per split: {splits}."

    def to_json(self) -> str:
        return json.dumps(
            {**dataclasses.asdict(self), "counts": self.counts, "num_rows": len(self.rows)}, indent=1
        )

    @classmethod
    def from_json(cls, text: str) -> PreparationReport:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def find_catalogues(directory: str | Path) -> list[Path]:
    """The catalogue CSVs of a manual dir: its top-level ``*.csv`` files, any case, sorted."""
    return sorted(
        p
        for p in Path(directory).iterdir()
        if p.suffix.lower() == ".csv" and not p.name.startswith(".") and p.is_file()
    )


def _cutout_id(name: str) -> str | None:
    """The galaxy id a cutout file name stands for (name minus its suffix), or None."""
    lower = name.lower()
    suffix = max((s for s in CUTOUT_SUFFIXES if lower.endswith(s)), key=len, default=None)
    return name[: -len(suffix)] if suffix and len(name) > len(suffix) else None


def _cutout_files(directory: Path) -> list[Path]:
    # Hidden files and folders (e.g. macOS `._x.png`, `.ipynb_checkpoints/`) are never cutouts.
    return sorted(
        p
        for p in directory.rglob("*")
        if not any(part.startswith(".") for part in p.relative_to(directory).parts)
        and _cutout_id(p.name) is not None
        and p.is_file()
    )


def index_cutouts(directory: str | Path) -> dict[str, list[Path]]:
    """Finds every cutout under a manual dir, in subfolders too, by galaxy id.

    A cutout is ``<local_ids><suffix>`` with a suffix of `CUTOUT_SUFFIXES` in any case
    (``a.png``, ``images/a.JPG``, ``a.FITS.GZ``); hidden files and folders are skipped.

    Args:
        directory: the manual dir.

    Returns:
        ``{local_id: [paths]}``; more than one path means the id is ambiguous.
    """
    index: dict[str, list[Path]] = {}
    for path in _cutout_files(Path(directory)):
        index.setdefault(_cutout_id(path.name), []).append(path)
    return index


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(directory: str | Path) -> dict[str, dict]:
    """What a build from this manual dir depends on, to tell whether a build is stale.

    Args:
        directory: the manual dir.

    Returns:
        ``{"catalogues": {file name: sha256}, "cutouts": {relative path: size in bytes}}``.
    """
    directory = Path(directory)
    return {
        "catalogues": {p.name: _sha256(p) for p in find_catalogues(directory)},
        "cutouts": {p.relative_to(directory).as_posix(): p.stat().st_size for p in _cutout_files(directory)},
    }


def fingerprint_difference(stored: Mapping[str, Mapping], current: Mapping[str, Mapping]) -> str:
    """Describes how two `fingerprint`s differ.

    Returns:
        E.g. ``"1 catalogue changed (a.csv); 2 cutouts added (x.png, y.png)"``; an empty
        string when they are equal.
    """
    parts = []
    for kind, noun in (("catalogues", "catalogue"), ("cutouts", "cutout")):
        old, new = stored.get(kind, {}), current.get(kind, {})
        for change, names in (
            ("added", sorted(new.keys() - old.keys())),
            ("removed", sorted(old.keys() - new.keys())),
            ("changed", sorted(k for k in old.keys() & new.keys() if old[k] != new[k])),
        ):
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                parts.append(f"{len(names)} {noun}{'s' if len(names) > 1 else ''} {change} ({shown})")
    return "; ".join(parts)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Central ``size`` x ``size`` crop of an [H, W, C] image (H, W >= size, same parity)."""
    h, w = image.shape[:2]
    if h < size or w < size or (h - size) % 2 or (w - size) % 2:
        raise ValueError(f"Cannot centre-crop {size}x{size} from image of shape {image.shape}.")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def load_cutout(path: str | Path, rules: PreparationRules) -> np.ndarray:
    """Reads a cutout (`gsfc_tf.images.read_image`) and returns the model's crop.

    A `cutout_size` square image is centre-cropped; a `crop_size` square image is taken as
    already cropped; any other size is rejected.

    Args:
        path: cutout file.
        rules: sizes and Lupton parameters.

    Returns:
        uint8 [crop_size, crop_size, 3].

    Raises:
        UnreadableImageError: corrupt file, unsupported layout or size.
    """
    path = Path(path)
    image = read_image(path, lupton_q=rules.lupton_q, lupton_stretch=rules.lupton_stretch).rgb
    h, w = image.shape[:2]
    if (h, w) == (rules.cutout_size, rules.cutout_size):
        return center_crop(image, rules.crop_size)
    if (h, w) == (rules.crop_size, rules.crop_size):
        return image
    raise UnreadableImageError(
        f"{path.name}: size {w}x{h}, expected {rules.cutout_size}x{rules.cutout_size} "
        f"(cutout) or {rules.crop_size}x{rules.crop_size} (crop)."
    )
