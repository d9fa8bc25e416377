"""`clump_scout`: Galaxy Zoo: Clump Scout galaxies with clump boxes, for detection.

Configs:
  * ``sdss`` (manual download): SDSS cutouts and a clump catalogue prepared as in
    Popp et al. 2024 (see `preparation`); every catalogue row is accounted for in
    ``preparation_report.json`` beside the dataset (`Builder.preparation_report_path`),
    with a fingerprint of the manual dir (`Builder.check_manual_dir` compares it).
  * ``synthetic``, ``synthetic_small``: seeded synthetic clumpy galaxies
    (`synthetic.generate_galaxies`, renderers drawn from `synthetic.TRAINING_FAMILY`).
  * ``synthetic_heldout``: a test split only, rendered from `synthetic.HELDOUT_FAMILY`, for
    scores on a renderer the detector was not trained on.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from gsfc_tf import conventions
from gsfc_tf.images import UnreadableImageError
from tfds_clumpscout.clump_scout import preparation, synthetic

__all__ = ["Builder", "ClumpScoutConfig"]

_REPORT_NAME = "preparation_report.json"
# A failed `sdss` preparation leaves its report here, under <data_dir>/clump_scout/sdss/, as
# TFDS deletes the unfinished version folder.
_FAILED_REPORT_NAME = "failed_preparation_report.json"
_SPLITS = ("train", "validation", "test")
_MAX_IMAGE_WARNINGS = 10


@dataclasses.dataclass(eq=False, kw_only=True)
class ClumpScoutConfig(tfds.core.BuilderConfig):
    """A `clump_scout` config.

    Attributes:
        source: ``"sdss"`` (manual download) or ``"synthetic"``.
        rules: preparation thresholds; ``rules.crop_size`` is the image size of both.
        catalogue_form: how `sdss` reads each catalogue CSV: ``"auto"`` (a ``label``
            column means the crop form, otherwise the consensus form; see
            `preparation.detect_form`), or ``"crop"`` / ``"consensus"`` for every file.
        num_train, num_validation, num_test: synthetic split sizes; a split of 0 is left out.
        synthetic_seed: synthetic split k is drawn with seed ``3 * synthetic_seed + k``,
            so splits (and configs with different seeds) never share a galaxy stream.
        family: the renderers the synthetic galaxies are drawn from.
    """

    source: str = "sdss"
    rules: preparation.PreparationRules = preparation.PreparationRules()
    catalogue_form: str = "auto"
    num_train: int = 4000
    num_validation: int = 1000
    num_test: int = 1000
    synthetic_seed: int = 0
    family: synthetic.RenderFamily = synthetic.TRAINING_FAMILY

    def __post_init__(self):
        if self.source not in ("sdss", "synthetic"):
            raise ValueError(f"source must be 'sdss' or 'synthetic', got {self.source!r}.")
        if self.catalogue_form not in ("auto", *preparation.CATALOGUE_FORMS):
            raise ValueError(
                f"catalogue_form must be 'auto', 'crop' or 'consensus', got {self.catalogue_form!r}."
            )
        sizes = (self.num_train, self.num_validation, self.num_test)
        if min(sizes) < 0 or max(sizes) < 1:
            raise ValueError(f"Synthetic split sizes must be >= 0, one of them >= 1, got {sizes}.")

    @property
    def image_size(self) -> int:
        return self.rules.crop_size


_ONE_SIDE_PER_GALAXY = (
    "One box side for all of a galaxy's clumps, as in every real multi-box Clump Scout galaxy (before: "
    "half the galaxies, the rest correlated): new galaxies, so figures on 1.4.0 and earlier do not carry over."
)
_RENDER_FAMILY = (
    "Each galaxy draws its renderer from `synthetic.TRAINING_FAMILY` (#28): PSF shape (Gaussian, double "
    "Gaussian, Moffat beta 2.5-4.5) and FWHM 1.9-5.8 px; Gaussian or exponential clumps; half the galaxies "
    "have their one box side set by the PSF (4-6.25 FWHM, point-like or resolved clumps), half by the clumps' "
    "light as before; composite stretch and Q, sky pedestal and noise, bulge Sersic index 1.5-4.5 and colours "
    "vary. The draws are stored under `render/`. New galaxies: figures on 1.5.0 and earlier do not carry over."
)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for `clump_scout`."""

    VERSION = tfds.core.Version("1.4.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: `sdss` (paper preparation, preparation report) and `synthetic`.",
        "1.2.0": (
            "Per-clump `objects/snr` and `objects/contrast` (synthetic; NaN for `sdss`); synthetic "
            "galaxies gain HII-region knots on their arms and field galaxies as unlabelled distractors."
        ),
        "1.3.0": (
            "`sdss`: catalogue form decided by the `label` column (or `catalogue_form`), duplicate "
            "boxes dropped, JPEG / upper-case / subfolder cutouts, 16-bit PNGs scaled as TensorFlow "
            "does, a manual-dir fingerprint in the report, one clear error for an empty split."
        ),
        "1.4.0": (
            "`sdss` FITS cutouts are combined as the synthetic galaxies are (`gsfc_tf.images.gri_composite`: "
            "g, r, i weighted 1.8, 1.1, 0.85, Q 9, stretch 0.468 nanomaggies; before, unweighted with Q 8 "
            "and stretch 0.5), so a detector trained on `synthetic` sees FITS cutouts as it was trained."
        ),
    }
    BUILDER_CONFIGS = [
        ClumpScoutConfig(
            name="sdss",
            source="sdss",
            description="SDSS gri cutouts with Clump Scout consensus boxes (manual download).",
        ),
        # The synthetic configs have their own versions: `sdss` did not change with them.
        ClumpScoutConfig(
            name="synthetic",
            source="synthetic",
            version=tfds.core.Version("2.0.0"),
            release_notes={"1.5.0": _ONE_SIDE_PER_GALAXY, "2.0.0": _RENDER_FAMILY},
            description="Seeded synthetic clumpy galaxies; no download.",
        ),
        # Galaxy k of each of its splits is galaxy k of `synthetic`'s (same seeds): its validation
        # and test splits are `synthetic`'s.
        ClumpScoutConfig(
            name="synthetic_small",
            source="synthetic",
            num_train=2400,
            num_validation=1000,
            num_test=1000,
            version=tfds.core.Version("2.0.0"),
            release_notes={
                "1.4.0": (
                    "2,400 training galaxies instead of 800 (the same validation and test galaxies): "
                    "the `smoke` preset trained on them scores about 0.03 higher at the same training time."
                ),
                "1.5.0": (
                    f"{_ONE_SIDE_PER_GALAXY} 1,000 validation and 1,000 test galaxies instead of 200: "
                    "the threshold and the test figures of `make demo` vary about half as much."
                ),
                "2.0.0": _RENDER_FAMILY,
            },
            description="A small `synthetic` (2,400/1,000/1,000 galaxies) for smoke runs, CI and Colab.",
        ),
        # Never for training or model selection: a test split only, from renderers outside the
        # training family and seeds no other config draws (test seed 3 * 1000 + 2).
        ClumpScoutConfig(
            name="synthetic_heldout",
            source="synthetic",
            num_train=0,
            num_validation=0,
            num_test=1000,
            synthetic_seed=1000,
            family=synthetic.HELDOUT_FAMILY,
            version=tfds.core.Version("2.0.0"),
            release_notes={
                "2.0.0": (
                    "1,000 test galaxies from `synthetic.HELDOUT_FAMILY` (#28): Moffat PSFs with beta 1.8-2.5, "
                    "composite stretch 0.585-0.702 and Q 12-15, sky pedestal 0.2-0.5 sky sigma and bulge Sersic index "
                    "4.5-6, all outside the training ranges; every box side set by the PSF."
                ),
            },
            description="Synthetic test galaxies from renderers outside `synthetic`'s; test split only.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "sdss"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Only the `sdss` config needs files. Put in the manual dir
    (default `~/tensorflow_datasets/downloads/manual/`, or `--manual_dir`):

    1. One or more catalogue CSVs (top-level `*.csv`, all are read; UTF-8, a BOM is
       fine), each in one of two forms:
       a. the authors' per-box table `local_ids,label,x1,x2,y1,y2` (label 1 clump,
          2 odd; pixels of the central 200x200 crop), e.g. the files converted from
          ou-astrophysics/Faster-R-CNN-for-Galaxy-Zoo-Clump-Scout
          `imageGroups_{train,valid}.pkl`;
       b. the consensus table `local_ids,x1,x2,y1,y2,mean_tool,false_pos_prob`
          (pixels of the 400x400 cutout).
       A file with a `label` column is read as (a), one without as (b); the config's
       `catalogue_form` forces one. Optional columns `ra`, `dec`, `redshift` are
       stored when present.
    2. The SDSS cutouts, exactly one per galaxy, anywhere under the manual dir (subfolders
       too), named `<local_ids>` plus `.png`, `.jpg`, `.jpeg` (400x400 or 200x200; RGB,
       RGBA, grey or palette; 8 or 16 bits) or `.fits`, `.fit`, `.fts`, optionally
       gzipped (g, r, i planes as a (3, H, W) cube or as three image HDUs); suffixes
       in any case.
    """

    @property
    def preparation_report_path(self) -> epath.Path:
        """Where the `sdss` preparation report is written (beside the dataset files)."""
        return epath.Path(self.data_dir) / _REPORT_NAME

    def load_preparation_report(self) -> preparation.PreparationReport:
        """Reads the report written when this `sdss` dataset was prepared."""
        return preparation.PreparationReport.from_json(self.preparation_report_path.read_text())

    def check_manual_dir(self, manual_dir: str) -> None:
        """Refuses a prepared `sdss` dataset that was built from other files than `manual_dir`.

        TFDS reuses a prepared dataset whatever manual dir it is given; this compares the
        manual dir's `preparation.fingerprint` with the one stored in the report. Nothing
        happens for `synthetic` configs or before the dataset is prepared.

        Raises:
            ValueError: the files differ; says what differs and how to rebuild.
        """
        if self.builder_config.source != "sdss" or not self.is_prepared():
            return
        stored = self.load_preparation_report().fingerprint
        difference = preparation.fingerprint_difference(stored, preparation.fingerprint(manual_dir))
        if difference:
            raise ValueError(
                f"{self.info.full_name} in {self.data_dir_root} was built from other files than "
                f"manual dir {manual_dir} ({difference}); to rebuild from {manual_dir}, delete "
                f"{self.data_dir_root / self.name / self.builder_config.name} or use another data dir."
            )

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        # Synthetic galaxies also record how each was rendered (`synthetic.RenderChoices`), so
        # scores can be split by choice.
        render = {
            name: tfds.features.Text() if kind is str else tfds.features.Scalar(dtype=np.float32)
            for name, kind in typing.get_type_hints(synthetic.RenderChoices).items()
        }
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), dtype=np.uint8),
                "image/id": tfds.features.Text(),
                "objects": tfds.features.Sequence({
                    "bbox": tfds.features.BBoxFeature(),
                    "label": tfds.features.ClassLabel(names=conventions.CLASS_NAMES),
                    "snr": tfds.features.Scalar(
                        dtype=np.float32, doc="Clump r-band signal-to-noise ratio in its box; NaN if unknown."
                    ),
                    "contrast": tfds.features.Scalar(
                        dtype=np.float32, doc="Clump over disc-and-bulge r flux in its box; NaN if unknown."
                    ),
                }),
                "ra": tfds.features.Scalar(dtype=np.float32, doc="Right ascension, deg; NaN if unknown."),
                "dec": tfds.features.Scalar(dtype=np.float32, doc="Declination, deg; NaN if unknown."),
                "redshift": tfds.features.Scalar(dtype=np.float32, doc="Redshift; NaN if unknown."),
                **({"render": tfds.features.FeaturesDict(render)} if self.builder_config.source == "synthetic" else {}),
            }),
            homepage="https://github.com/ou-astrophysics/Faster-R-CNN-for-Galaxy-Zoo-Clump-Scout",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.source == "synthetic":
            sizes = (config.num_train, config.num_validation, config.num_test)
            return {
                name: self._generate_examples(n=n, seed=3 * config.synthetic_seed + k)
                for k, (name, n) in enumerate(zip(_SPLITS, sizes))
                if n > 0
            }
        return self._sdss_split_generators(Path(dl_manager.manual_dir))

    def _sdss_split_generators(self, manual_dir: Path) -> dict[str, Iterator]:
        config = self.builder_config
        rules = config.rules
        catalogues = preparation.find_catalogues(manual_dir)
        if not catalogues:
            raise FileNotFoundError(
                f"No catalogue CSV in {manual_dir}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        forms, rows = {}, []
        for path in catalogues:
            form, catalogue_rows = preparation.read_catalogue(path, rules, form=config.catalogue_form)
            forms[path.name] = form
            rows += catalogue_rows
            if config.catalogue_form != "auto":
                why = f"catalogue_form={config.catalogue_form!r}"
            else:
                why = "it has a label column" if form == "crop" else "it has no label column"
            print(f"{self.info.full_name}: read {path.name} as the {form} form ({why}).")
        rows = preparation.drop_duplicates(rows)
        cutouts, reasons = self._probe_cutouts(manual_dir, preparation.kept_galaxies(rows))
        rows = preparation.drop_galaxies(rows, reasons)
        galaxies = preparation.kept_galaxies(rows)
        splits = preparation.stratified_split(
            list(galaxies),
            [preparation.stratum(g.labels) for g in galaxies.values()],
            fractions=rules.split_fractions,
            names=_SPLITS,
            seed=rules.split_seed,
        )
        report = preparation.PreparationReport.build(
            rows, splits, rules=rules, catalogues=forms, fingerprint=preparation.fingerprint(manual_dir)
        )
        empty = [name for name, ids in splits.items() if not ids]
        # TFDS deletes its unfinished folder, so a failed preparation's report goes beside it.
        failed = self.data_dir_root / self.name / config.name / _FAILED_REPORT_NAME
        if empty:
            failed.write_text(report.to_json())
            raise ValueError(
                f"{self.info.full_name}: no galaxy left for split {', '.join(empty)} "
                f"({report.summary()}); every row's fate is in {failed}."
            )
        # data_dir is TFDS's temporary folder here, renamed with the dataset when done.
        self.preparation_report_path.write_text(report.to_json())
        failed.unlink(missing_ok=True)
        print(
            f"{self.info.full_name}: {report.summary()} Report: "
            f"{self.data_dir_root / self.info.full_name / _REPORT_NAME}"
        )
        return {
            name: self._generate_examples(galaxies=[galaxies[i] for i in ids], cutouts=cutouts)
            for name, ids in splits.items()
        }

    def _probe_cutouts(
        self, manual_dir: Path, galaxies: Mapping[str, preparation.Galaxy]
    ) -> tuple[dict[str, Path], dict[str, str]]:
        """Finds and test-reads each galaxy's cutout before splitting.

        Args:
            manual_dir: where the cutouts are (`preparation.index_cutouts`).
            galaxies: galaxies with kept boxes.

        Returns:
            (``{local_id: cutout path}`` for readable cutouts,
            ``{local_id: drop reason}`` for missing or unreadable ones).

        Raises:
            ValueError: some galaxies have several cutouts (names them).
        """
        index = preparation.index_cutouts(manual_dir)
        ambiguous = [(i, index[i]) for i in galaxies if len(index.get(i, ())) > 1]
        if ambiguous:
            shown = "; ".join(
                f"{i}: {', '.join(p.relative_to(manual_dir).as_posix() for p in paths)}"
                for i, paths in ambiguous[:5]
            )
            raise ValueError(
                f"Several cutouts for {len(ambiguous)} galaxy id(s) in {manual_dir}; keep one file per "
                f"galaxy: {shown}{'; ...' if len(ambiguous) > 5 else ''}."
            )
        cutouts, reasons = {}, {}
        for local_id in galaxies:
            path = index[local_id][0] if local_id in index else None
            if path is None:
                reasons[local_id], detail = "missing_image", "no cutout named after it"
            else:
                try:
                    preparation.load_cutout(path, self.builder_config.rules)
                except UnreadableImageError as err:
                    reasons[local_id], detail = "unreadable_image", str(err)
                else:
                    cutouts[local_id] = path
                    continue
            if len(reasons) <= _MAX_IMAGE_WARNINGS:
                logging.warning("clump_scout/sdss: skipping galaxy %s: %s", local_id, detail)
        if len(reasons) > _MAX_IMAGE_WARNINGS:
            logging.warning(
                "clump_scout/sdss: skipped %d galaxies for missing or unreadable cutouts "
                "(first %d shown); see %s.",
                len(reasons),
                _MAX_IMAGE_WARNINGS,
                _REPORT_NAME,
            )
        return cutouts, reasons

    def _generate_examples(self, **split_args):
        """Yields (key, example): `sdss` takes galaxies and cutouts, `synthetic` n and seed."""
        if self.builder_config.source == "synthetic":
            yield from self._generate_synthetic(**split_args)
        else:
            yield from self._generate_sdss(**split_args)

    def _generate_sdss(self, galaxies: list[preparation.Galaxy], cutouts: Mapping[str, Path]):
        rules = self.builder_config.rules
        for galaxy in galaxies:
            yield galaxy.local_id, _example(
                galaxy.local_id,
                preparation.load_cutout(cutouts[galaxy.local_id], rules),
                galaxy.boxes_yxyx,
                galaxy.labels,
                ra=galaxy.ra,
                dec=galaxy.dec,
                redshift=galaxy.redshift,
            )

    def _generate_synthetic(self, n: int, *, seed: int):
        config = self.builder_config
        for k, galaxy in enumerate(
            synthetic.generate_galaxies(n, seed=seed, image_size=config.image_size, family=config.family)
        ):
            key = f"synthetic-{seed}-{k:06d}"
            yield key, _example(
                key,
                galaxy.image,
                galaxy.boxes_yxyx,
                galaxy.labels,
                ra=galaxy.ra,
                dec=galaxy.dec,
                redshift=galaxy.redshift,
                snr=galaxy.snr,
                contrast=galaxy.contrast,
                render=dataclasses.asdict(galaxy.choices),
            )


def _example(
    local_id: str,
    image: np.ndarray,
    boxes_yxyx: np.ndarray,
    labels: np.ndarray,
    *,
    ra: float,
    dec: float,
    redshift: float,
    snr: np.ndarray | None = None,
    contrast: np.ndarray | None = None,
    render: dict | None = None,
) -> dict:
    """One TFDS example; pixel boxes [N, 4] become TFDS's normalised yxyx.

    `snr` and `contrast` are [N] per clump, NaN where not given (real galaxies); `render` is a
    synthetic galaxy's `RenderChoices` as a dict (real galaxies have none).
    """
    # Pixels are a window on the unit square, magnified (H, W) times.
    boxes_yxyx = np.asarray(boxes_yxyx, np.float32).reshape(-1, 4)
    bbox = np.clip(conventions.from_window(boxes_yxyx, scale_yx=image.shape[:2]), 0.0, 1.0)
    unknown = np.full(len(bbox), np.nan, np.float32)
    return {
        "image": image,
        "image/id": local_id,
        "objects": {
            "bbox": bbox,
            "label": np.asarray(labels, np.int64),
            "snr": unknown if snr is None else np.asarray(snr, np.float32),
            "contrast": unknown if contrast is None else np.asarray(contrast, np.float32),
        },
        "ra": ra,
        "dec": dec,
        "redshift": redshift,
        **({} if render is None else {"render": render}),
    }
