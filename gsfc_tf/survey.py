"""Survey-scale inference on Apache Beam: a sharded clump catalogue for millions of cutouts.

Shape shorthand: B cutouts in a batch, H x W one cutout's size.

The pipeline (`DetectClumps`, written by `run_survey`) runs unchanged on the DirectRunner here and
on Dataflow, Flink or Spark at scale:

    inputs -> read each cutout (`catalogue.read_galaxy`) -> RunInference (`DetectorHandler`:
    the model loaded once per worker process and shared by its threads, batches of one image
    size) -> clump rows with host and photometry columns (`catalogue.catalogue_galaxy` on the
    cutout's science image, as `gsfc-tf predict` makes them) -> Parquet shards; and
    every input's status (detected / no_clumps / unreadable) and host columns -> Parquet shards.

Both schemas follow the row dataclasses (`catalogue.CatalogueRow` and the input path,
`SurveyImageRow`): photometry has a fixed column set, SDSS ugriz (`catalogue.PHOTOMETRY_BANDS`),
NaN where a cutout lacks a band, so every shard has one schema and `--merge` writes predict's rows.

Paths go through Beam's `FileSystems`, so inputs, the model and the outputs may be `gs://` or
`s3://` URLs where Beam's filesystem extra (`apache-beam[gcp]`, `[aws]`) is installed. Local glob
patterns expand as `gsfc-tf predict` expands them (`catalogue.expand_image_paths`), so both list
the same files; URL patterns expand through Beam's filesystems. A local input is recorded by its
absolute path with symlinks resolved, so `a.png`, `./a.png` and `/data/a.png` are one input in
every run; a file whose name is not valid UTF-8 is recorded, with the name escaped
(`bad\\xff.png`), as unreadable.

Resuming: a run writes only files named `PREFIX-<run id>-*`: its inputs list first, then its
shards, and its done manifest `PREFIX-<run id>-done.json` last, once the pipeline has finished
and its shards have been read back. A later run skips every input that a completed run (one with a
done manifest) processed, unless asked to retry the unreadable ones, and counts only the shards a
done manifest names, so a run killed at any point (even by SIGKILL) leaves nothing that is
counted twice: its inputs are processed again by the next run. Local prefixes are recorded as
absolute paths, so a rerun may start from any directory.

Galaxy ids are unique over all the runs of a prefix: rows already written cannot be renamed, so a
run whose input would take the id that an earlier run gave another file (`a/good.png` then
`b/good.png`, both `good`) is refused; give such inputs ids in a manifest's `id` column.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from astropy import units as u

from gsfc_tf import __version__, catalogue
from gsfc_tf.bands import check_band_options
from gsfc_tf.catalogue import DEFAULT_HOST_MASK, IMAGE_STATUSES, CatalogueRow, GalaxyRows, ImageStatusRow
from gsfc_tf.detector import Detector, default_min_score, load_detector, validation_threshold
from gsfc_tf.images import UnreadableImageError

__all__ = [
    "CLUMP_SCHEMA",
    "IMAGE_SCHEMA",
    "MERGE_MAX_ROWS",
    "DetectClumps",
    "DetectorHandler",
    "OperatingThreshold",
    "SurveyImageRow",
    "SurveyInput",
    "SurveyRun",
    "completed_runs",
    "list_inputs",
    "operating_threshold",
    "run_survey",
]

# A merged CSV/FITS is built in memory on the launching machine; past this, read the shards.
MERGE_MAX_ROWS = 5_000_000
_RUN_ID_PATTERN = r"\d{8}T\d{6}-[0-9a-f]{8}"
_UNREADABLE = IMAGE_STATUSES[2]

@dataclasses.dataclass(frozen=True)
class SurveyImageRow(ImageStatusRow):
    """One input of a survey and what became of it: `ImageStatusRow` and the manifest's position.

    Attributes:
        galaxy_ra: the galaxy's right ascension from the manifest, degrees; NaN if not given.
        galaxy_dec: its declination, likewise.
    """

    galaxy_ra: float = math.nan
    galaxy_dec: float = math.nan

    UNITS: ClassVar[dict[str, u.Unit]] = {"galaxy_ra": u.deg, "galaxy_dec": u.deg}


_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def _schema(row_type: type, *, path_after: str | None = None) -> pa.Schema:
    """A Parquet schema with one column per field of `row_type` (and `path` after `path_after`)."""
    columns = []
    for field in dataclasses.fields(row_type):
        columns.append((field.name, _ARROW_TYPES[field.type]))
        if field.name == path_after:
            columns.append(("path", pa.string()))
    return pa.schema(columns)


# One row per clump: `CatalogueRow`'s columns (cutout pixels, RA/Dec from the WCS, host and
# photometry) and the input path.
CLUMP_SCHEMA = _schema(CatalogueRow, path_after="galaxy_id")
# One row per input: `SurveyImageRow`'s columns.
IMAGE_SCHEMA = _schema(SurveyImageRow)


@dataclasses.dataclass(frozen=True)
class SurveyInput:
    """One cutout to process.

    Attributes:
        path: the cutout file: a local path made absolute with symlinks resolved, or a Beam
            filesystem URL as given.
        galaxy_id: the id written in its rows.
        galaxy_ra: the galaxy's right ascension from the manifest, degrees; NaN if not given.
        galaxy_dec: its declination, likewise.
        unreadable_reason: why the cutout is unreadable without trying it (its file name is not
            valid UTF-8, so `path` and `galaxy_id` hold it escaped); empty otherwise.
    """

    path: str
    galaxy_id: str
    galaxy_ra: float = math.nan
    galaxy_dec: float = math.nan
    unreadable_reason: str = ""


@dataclasses.dataclass(frozen=True)
class _Cutout:
    """A read cutout on its way to the detector: uint8 image [H, W, 3], celestial WCS or None, bad
    pixels, and its `catalogue.ScienceImage`."""

    item: SurveyInput
    image: np.ndarray
    wcs: Any
    n_bad_pixels: int
    science: catalogue.ScienceImage


@dataclasses.dataclass(frozen=True)
class OperatingThreshold:
    """The minimum score of catalogued clumps, and where it came from (written with the outputs)."""

    value: float
    source: str


# --------------------------------------------------------------------------------------------
# Listing inputs.


@dataclasses.dataclass(frozen=True)
class _Listed:
    """One input as listed: its path as given (galaxy ids derive from it) and the manifest's values.

    `line` is its manifest line, 0 for an `--inputs` match.
    """

    path: str
    given_id: str | None = None
    ra: float = math.nan
    dec: float = math.nan
    line: int = 0


def _is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def _is_url(path: str) -> bool:
    return "://" in path


def _normalised(path: str) -> str:
    """One spelling per file: a local path absolute with symlinks resolved, a URL without a trailing slash."""
    return os.path.realpath(path) if _is_local(path) else path.rstrip("/")



def _expand(pattern: str) -> list[str]:
    """Sorted matches of a glob; a plain path, or a glob matching nothing, stays as given.

    A local pattern expands exactly as `gsfc-tf predict` expands it (`catalogue.expand_image_paths`:
    Python's glob, `**/` matching any folders or none), so both list the same files; only URL
    patterns (`gs://`, `s3://`) go through Beam's filesystems, whose `**` rules differ. An
    unmatched name is kept, to be reported unreadable instead of dropped.
    """
    if not _is_url(pattern):
        return [str(path) for path in catalogue.expand_image_paths([pattern])]
    if not catalogue.is_glob_pattern(pattern):
        return [pattern]
    return sorted(metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list) or [pattern]


def _number(text: str | None, where: str) -> float:
    if text is None or not text.strip():
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def _read_manifest(manifest: str) -> list[_Listed]:
    """The rows of a CSV with a `path` column and optional `id`, `ra`, `dec` (degrees) columns.

    Relative paths are relative to the manifest's directory. A UTF-8 byte-order mark, as
    spreadsheet programs write, is allowed.

    Raises:
        ValueError: not UTF-8, no `path` column or one of those columns twice, or a row without a
            path or with ra outside [0, 360) or dec outside [-90, 90]; the message names the line.
    """
    with FileSystems.open(manifest) as file:
        data = file.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{manifest}: not UTF-8 text (byte {error.start}); save it as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    if "path" not in columns:
        raise ValueError(f"{manifest}: a manifest needs a 'path' column, got {columns}")
    for column in ("path", "id", "ra", "dec"):
        if columns.count(column) > 1:
            times = columns.count(column)
            raise ValueError(f"{manifest} line 1: the column {column!r} appears {times} times; keep one")
    directory = FileSystems.split(manifest)[0]
    entries = []
    for row in reader:
        where = f"{manifest} line {reader.line_num}"
        path = (row["path"] or "").strip()  # None: the row is shorter than the header
        if not path:
            raise ValueError(f"{where}: no path; give every row a path, or delete the row")
        if not _is_url(path) and not os.path.isabs(path):
            path = FileSystems.join(directory, path)
        ra, dec = _number(row.get("ra"), f"{where} ra"), _number(row.get("dec"), f"{where} dec")
        if not (math.isnan(ra) or 0 <= ra < 360):
            raise ValueError(f"{where}: ra {ra} is outside [0, 360) degrees")
        if not (math.isnan(dec) or -90 <= dec <= 90):
            raise ValueError(f"{where}: dec {dec} is outside [-90, 90] degrees")
        given_id = (row.get("id") or "").strip() or None
        entries.append(_Listed(path, given_id, ra, dec, line=reader.line_num))
    return entries


def list_inputs(patterns: Sequence[str] = (), *, manifest: str | None = None) -> list[SurveyInput]:
    """The survey's inputs: a manifest's rows, then glob matches, each file once (first kept).

    Files are compared by `path` (absolute, symlinks resolved), so a file given both in the
    manifest and by a pattern, or by two spellings, is one input. Galaxy ids are the manifest's
    `id` where given, else `catalogue.unique_galaxy_ids` of the paths as listed, as
    `gsfc-tf predict` makes them. A file whose name is not valid UTF-8 gets its name escaped and
    an `unreadable_reason`.

    Args:
        patterns: cutout files or glob patterns (local or Beam filesystem URLs).
        manifest: a CSV with a `path` column and optional `id`, `ra`, `dec` (degrees) columns.

    Raises:
        ValueError: no inputs, a malformed manifest (see `_read_manifest`), a manifest listing
            one file twice, or two inputs with one galaxy id.
    """
    by_file: dict[str, _Listed] = {}
    matched = [_Listed(path) for pattern in patterns for path in _expand(pattern)]
    for entry in [*(_read_manifest(manifest) if manifest else []), *matched]:
        file = _normalised(entry.path)
        first = by_file.setdefault(file, entry)
        if first is not entry and first.line and entry.line:
            raise ValueError(
                f"{manifest} line {entry.line}: {entry.path} is already listed on line {first.line}; "
                "list each cutout once"
            )
    if not by_file:
        raise ValueError("no inputs: give --inputs patterns or a --manifest")
    derived = catalogue.unique_galaxy_ids([entry.path for entry in by_file.values()])
    items = []
    for (file, entry), derived_id in zip(by_file.items(), derived):
        # The inputs file and Parquet shards are UTF-8 text, which cannot carry such a name to the workers.
        path = catalogue.printable(file)
        reason = f"{FileSystems.split(path)[1]}: the file name is not valid UTF-8; rename the file"
        galaxy = entry.given_id or derived_id
        items.append(SurveyInput(path, galaxy, entry.ra, entry.dec, unreadable_reason="" if path == file else reason))
    seen: dict[str, str] = {}
    for item in items:
        if item.galaxy_id in seen:
            raise ValueError(f"{seen[item.galaxy_id]} and {item.path} have the same galaxy id {item.galaxy_id!r}")
        seen[item.galaxy_id] = item.path
    return items


# --------------------------------------------------------------------------------------------
# Reading cutouts and running the detector.


def _copy_to(source: str, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with FileSystems.open(source, compression_type=CompressionTypes.UNCOMPRESSED) as src, open(destination, "wb") as dst:
        shutil.copyfileobj(src, dst)


def _read(item: SurveyInput, band_options: Mapping[str, Any]) -> tuple[catalogue.Cutout, catalogue.ScienceImage]:
    """`catalogue.read_galaxy` of a local or remote cutout.

    Raises:
        UnreadableImageError: the file is missing, unreachable or not a usable image.
    """
    if _is_local(item.path):
        return catalogue.read_galaxy(item.path, band_options=band_options)
    with tempfile.TemporaryDirectory() as tmp:
        # read_galaxy reads local files; the file's own name picks the format and names it in errors.
        local = Path(tmp) / FileSystems.split(item.path)[1]
        try:
            _copy_to(item.path, local)
        except Exception as error:  # each filesystem raises its own types for a missing file
            raise UnreadableImageError(f"{local.name}: {type(error).__name__}: {error}") from error
        return catalogue.read_galaxy(local, band_options=band_options)


def _local_model(model: str) -> str:
    """`model` itself when local, else a local copy of the remote file or directory tree."""
    if _is_local(model):
        return model
    base = model.rstrip("/")
    target = Path(tempfile.mkdtemp(prefix="gsfc_tf_model-"))
    tree = FileSystems.match([f"{base}/**"])[0].metadata_list
    if not tree:
        _copy_to(base, target / FileSystems.split(base)[1])
        return str(target / FileSystems.split(base)[1])
    for metadata in tree:
        _copy_to(metadata.path, target / metadata.path[len(base) :].lstrip("/"))
    return str(target)


class _ReadCutouts(beam.DoFn):
    """SurveyInput -> _Cutout, or (SurveyInput, reason) on the `unreadable` output.

    Args:
        band_options: `bands.read_bands`' keyword arguments, for what FITS headers lack.
    """

    def __init__(self, band_options: Mapping[str, Any]):
        super().__init__()
        self._band_options = dict(band_options)

    def process(self, item: SurveyInput) -> Iterator[Any]:
        if item.unreadable_reason:
            yield beam.pvalue.TaggedOutput(_UNREADABLE, (item, item.unreadable_reason))
            return
        try:
            cutout, science = _read(item, self._band_options)
        except UnreadableImageError as error:
            yield beam.pvalue.TaggedOutput(_UNREADABLE, (item, str(error)))
            return
        yield _Cutout(item, *cutout, science=science)


class DetectorHandler(ModelHandler):
    """RunInference handler: batches of cutouts -> (SurveyInput, `GalaxyRows`, bad pixels) per cutout.

    Beam's stock TensorFlow handler imports tensorflow_hub; this one loads any model
    `detector.load_detector` loads (a run directory or an exported SavedModel). RunInference keeps
    one loaded model per worker process, shared by its threads. A detector call needs one image
    size, so each batch is split by size; rows are made exactly as `catalogue.predict_catalogue`
    makes them.

    Args:
        model: run directory, `.keras` file or SavedModel directory (local or a Beam URL).
        min_score: keep detections scoring at least this.
        batch_size: cutouts per batch.
        host_mask: one of `catalogue.HOST_MASK_MODES`.
    """

    def __init__(self, model: str, *, min_score: float, batch_size: int = 8, host_mask: str = DEFAULT_HOST_MASK):
        catalogue.check_host_mask(host_mask)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # A fixed batch size; the end of a bundle flushes a smaller batch.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._model = model
        self._min_score = min_score
        self._host_mask = host_mask

    def load_model(self) -> Detector:
        return load_detector(_local_model(self._model))

    def run_inference(
        self, batch: Sequence[_Cutout], model: Detector, inference_args: dict | None = None
    ) -> list[tuple[SurveyInput, GalaxyRows, int]]:
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, cutout in enumerate(batch):
            by_size.setdefault(cutout.image.shape, []).append(index)
        results: list[Any] = [None] * len(batch)
        for indices in by_size.values():
            detections = model.detect_boxes(np.stack([batch[index].image for index in indices]))
            for index, found in zip(indices, detections):
                cutout = batch[index]
                galaxy = catalogue.catalogue_galaxy(
                    cutout.item.galaxy_id, found, cutout.science, wcs=cutout.wcs, min_score=self._min_score,
                    host_mask=self._host_mask,
                )
                # Not the cutout itself: its images need not travel on.
                results[index] = (cutout.item, galaxy, cutout.n_bad_pixels)
        return results

    def get_num_bytes(self, batch: Sequence[_Cutout]) -> int:
        # The default pickles the whole batch to measure it.
        return sum(cutout.image.nbytes + cutout.science.detection.nbytes for cutout in batch)


def _clump_records(result: tuple[SurveyInput, GalaxyRows, int]) -> list[dict[str, Any]]:
    item, galaxy, _ = result
    return [{**dataclasses.asdict(row), "path": item.path} for row in galaxy.rows]


def _image_record(
    item: SurveyInput, status: str, *, reason: str = "", n_clumps: int = 0, n_bad_pixels: int = 0,
    science_columns: dict | None = None,
) -> dict[str, Any]:
    row = SurveyImageRow(
        galaxy_id=item.galaxy_id, path=item.path, status=status, reason=catalogue.printable(reason), n_clumps=n_clumps,
        n_bad_pixels=n_bad_pixels, galaxy_ra=item.galaxy_ra, galaxy_dec=item.galaxy_dec, **(science_columns or {}),
    )
    return dataclasses.asdict(row)


def _detected_record(result: tuple[SurveyInput, GalaxyRows, int]) -> dict[str, Any]:
    item, galaxy, n_bad_pixels = result
    return _image_record(
        item, "detected" if galaxy.rows else "no_clumps", n_clumps=len(galaxy.rows), n_bad_pixels=n_bad_pixels,
        science_columns=galaxy.image_columns,
    )


class DetectClumps(beam.PTransform):
    """PCollection[SurveyInput] -> {"clumps": CLUMP_SCHEMA records, "images": IMAGE_SCHEMA records}.

    Every input gives exactly one `images` record: detected, no_clumps, or unreadable with the reason.

    Args:
        handler: the `DetectorHandler` to run.
        band_options: `bands.read_bands`' keyword arguments, for what FITS headers lack.
    """

    def __init__(self, handler: DetectorHandler, band_options: Mapping[str, Any] | None = None):
        super().__init__()
        self._handler = handler
        self._band_options = check_band_options(band_options)

    def expand(self, items):
        read = items | "ReadCutouts" >> beam.ParDo(_ReadCutouts(self._band_options)).with_outputs(
            _UNREADABLE, main="cutouts"
        )
        found = read.cutouts | "Detect" >> RunInference(self._handler)
        unreadable = read[_UNREADABLE] | "UnreadableStatus" >> beam.MapTuple(
            lambda item, reason: _image_record(item, _UNREADABLE, reason=reason)
        )
        return {
            "clumps": found | "ClumpRows" >> beam.FlatMap(_clump_records),
            "images": (found | "DetectedStatus" >> beam.Map(_detected_record), unreadable) | beam.Flatten(),
        }


# --------------------------------------------------------------------------------------------
# Runs, resuming and merging.


@dataclasses.dataclass(frozen=True)
class SurveyRun:
    """What `run_survey` did.

    Attributes:
        n_inputs: inputs listed.
        n_already_done: of those, inputs skipped because a completed run processed them (and,
            with `retry_unreadable`, could read them).
        threshold: the minimum score applied.
        run: this run's done manifest (`run_id`, `status_counts`, `n_clumps`, shard lists, ...), or
            None when every input was already done.
        merged: the merged catalogue and image table, when asked for.
    """

    n_inputs: int
    n_already_done: int
    threshold: OperatingThreshold
    run: dict[str, Any] | None
    merged: tuple[str, ...] = ()


def operating_threshold(detector: Detector, min_score: float | None = None) -> OperatingThreshold:
    """`min_score` if given, else the model's validation operating threshold (`detector.default_min_score`)."""
    if min_score is not None:
        return OperatingThreshold(float(min_score), "given (--min-score)")
    value = default_min_score(detector)
    if validation_threshold(detector) is None:
        return OperatingThreshold(value, f"default: {detector.source} records no validation operating threshold")
    where = "validation.json of its run" if detector.run_dir is not None else "recorded in the export's metadata"
    return OperatingThreshold(value, f"validation operating threshold of {detector.source} ({where})")


def completed_runs(out_prefix: str) -> list[dict[str, Any]]:
    """The done manifests of the completed runs under `out_prefix`, oldest first."""
    out_prefix = _output_prefix(out_prefix)
    pattern = re.compile(re.escape(out_prefix) + rf"-({_RUN_ID_PATTERN})-done\.json$")
    paths = sorted(
        metadata.path
        for metadata in FileSystems.match([f"{out_prefix}-*-done.json"])[0].metadata_list
        if pattern.search(metadata.path)
    )
    runs = []
    for path in paths:
        with FileSystems.open(path) as file:
            runs.append(json.loads(file.read()))
    return runs


def _output_prefix(out_prefix: str) -> str:
    """`out_prefix` as runs record it: absolute when local, so a rerun may start anywhere.

    Raises:
        ValueError: `out_prefix` ends with a slash or is a directory, where the outputs would be
            hidden files named `-<run id>-...`.
    """
    if out_prefix.endswith("/") or (_is_local(out_prefix) and os.path.isdir(out_prefix)):
        example = FileSystems.join(out_prefix.rstrip("/"), "survey")
        raise ValueError(f"{out_prefix} is a directory; give a file-name prefix inside it, e.g. {example}")
    return os.path.abspath(out_prefix) if _is_local(out_prefix) else out_prefix


def _check_writable(run_prefix: str, merged: Sequence[str]) -> None:
    """Checks, before the model loads, that a local run can write its files and the merged tables.

    Raises:
        ValueError: a folder on the way is a file or is not writable, or a merged table is read-only.
    """
    if _is_local(run_prefix):
        for path in [f"{run_prefix}-done.json", *merged]:
            catalogue.check_output_file(path)


def _merged_paths(out_prefix: str, format: str) -> tuple[str, str]:
    """The merged catalogue `PREFIX.FORMAT` and its image table `PREFIX.images.FORMAT`."""
    directory, name = FileSystems.split(f"{out_prefix}.{format}")
    return FileSystems.join(directory, name), FileSystems.join(directory, catalogue.image_table_path(name).name)


def _read_input_paths(inputs_file: str) -> list[str]:
    with FileSystems.open(inputs_file) as file:
        return [row["path"] for row in csv.DictReader(io.StringIO(file.read().decode("utf-8")))]


def _write_inputs(items: Sequence[SurveyInput], path: str) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([field.name for field in dataclasses.fields(SurveyInput)])
    writer.writerows(dataclasses.astuple(item) for item in items)
    with FileSystems.create(path) as file:
        file.write(text.getvalue().encode("utf-8"))


def _parse_input_line(line: str) -> SurveyInput:
    path, galaxy_id, ra, dec, unreadable_reason = next(csv.reader([line]))
    return SurveyInput(path, galaxy_id, float(ra), float(dec), unreadable_reason)


def _read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
        return file.read()


def _read_table(path: str, columns: Sequence[str] | None = None) -> pa.Table:
    # Not `pq.read_table`: it starts Arrow's I/O and CPU thread pools, whose workers are still
    # alive when the process exits and about one run in 40 aborts tearing them down ("terminate
    # called without an active exception", apache/arrow#34314). This reader starts no thread.
    return pq.ParquetFile(pa.BufferReader(_read_bytes(path))).read(columns=columns, use_threads=False)


def _shards(pattern: str) -> list[str]:
    return sorted(metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list)


def _latest_image_records(runs: Iterable[dict[str, Any]], out_prefix: str) -> dict[str, dict[str, Any]]:
    """Path -> its image record (IMAGE_SCHEMA, plus `run_id`) from the latest completed run that processed it.

    Args:
        runs: done manifests, oldest first.
        out_prefix: their prefix, for messages.

    Raises:
        ValueError: two runs processed one path and the earlier one could read it: they ran at once.
    """
    latest: dict[str, dict[str, Any]] = {}
    for run in runs:
        for shard in run["image_shards"]:
            for record in _read_table(shard).to_pylist():
                earlier = latest.get(record["path"])
                if earlier is not None and earlier["status"] != _UNREADABLE:
                    raise ValueError(
                        f"{record['path']} was processed by runs {earlier['run_id']} and {run['run_id']} under "
                        f"{out_prefix}, which ran at once: delete {out_prefix}-{run['run_id']}-done.json to redo "
                        "that run's inputs"
                    )
                latest[record["path"]] = {**record, "run_id": run["run_id"]}
    return latest


def _check_ids_are_new(todo: Sequence[SurveyInput], latest: dict[str, dict[str, Any]], out_prefix: str) -> None:
    """Raises ValueError when an input would take the galaxy id an earlier run gave another file."""
    redone = {item.path for item in todo}
    owners = {record["galaxy_id"]: record for path, record in latest.items() if path not in redone}
    for item in todo:
        owner = owners.get(item.galaxy_id)
        if owner is not None:
            raise ValueError(
                f"{item.path} would be galaxy {item.galaxy_id!r}, the id run {owner['run_id']} under {out_prefix} "
                f"gave {owner['path']}: give the inputs ids in a manifest's 'id' column, or use another --out"
            )


def run_survey(
    model: str,
    out_prefix: str,
    *,
    patterns: Sequence[str] = (),
    manifest: str | None = None,
    min_score: float | None = None,
    batch_size: int = 8,
    num_shards: int = 0,
    merge: str | None = None,
    retry_unreadable: bool = False,
    pipeline_args: Sequence[str] = (),
    host_mask: str = DEFAULT_HOST_MASK,
    band_options: Mapping[str, Any] | None = None,
) -> SurveyRun:
    """Runs the survey pipeline over the inputs that no completed run under `out_prefix` processed.

    Writes `PREFIX-<run id>-inputs.csv`, `PREFIX-<run id>-clumps-SSSSS-of-NNNNN.parquet`,
    `PREFIX-<run id>-images-SSSSS-of-NNNNN.parquet` and, last, `PREFIX-<run id>-done.json` (the
    model, the threshold and its source, counts and shard names, absolute paths when local). With
    `merge`, also `PREFIX.{csv,fits}` (`catalogue.write_catalogue`, rows in input order as
    `gsfc-tf predict` writes them) and its image table `PREFIX.images.{csv,fits}` (`SurveyImageRow`:
    predict's columns and the manifest's galaxy_ra, galaxy_dec) over every completed run, each
    input once with its latest run's row. Inputs, galaxy ids and outputs are checked before the
    model loads.

    Args:
        model: run directory, `.keras` file or SavedModel directory.
        out_prefix: output path prefix (local or a Beam URL); not a directory.
        patterns: cutout files or glob patterns.
        manifest: CSV of inputs (see `list_inputs`).
        min_score: keep clumps scoring at least this; default the model's operating threshold.
        batch_size: cutouts per detector call.
        num_shards: shards per table; 0 lets the runner choose.
        merge: None, "csv" or "fits".
        retry_unreadable: also process again the inputs whose latest run found them unreadable.
        pipeline_args: Beam pipeline options, e.g. ["--runner=DataflowRunner", "--project=..."].
        host_mask: one of `catalogue.HOST_MASK_MODES` (`catalogue.catalogue_galaxy`).
        band_options: `bands.read_bands`' keyword arguments: zero points, PSF FWHMs, pixel scale
            and gains for FITS bands whose headers lack them (`bands.BAND_OPTIONS`).

    Raises:
        ValueError: bad inputs or options, outputs that cannot be written, earlier runs under
            `out_prefix` made with another model, threshold, host mask (or before host masks) or
            band options, an input taking a galaxy id an earlier run gave another file, or a
            merge too large for one machine.
    """
    if merge not in (None, "csv", "fits"):
        raise ValueError(f'merge must be "csv" or "fits", got {merge!r}')
    catalogue.check_host_mask(host_mask)
    band_options = check_band_options(band_options)
    out_prefix = _output_prefix(out_prefix)
    items = list_inputs(patterns, manifest=manifest)
    run_id = f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    _check_writable(f"{out_prefix}-{run_id}", _merged_paths(out_prefix, merge) if merge else ())
    runs = completed_runs(out_prefix)
    latest = _latest_image_records(runs, out_prefix)
    todo = [
        item for item in items
        if item.path not in latest or (retry_unreadable and latest[item.path]["status"] == _UNREADABLE)
    ]
    _check_ids_are_new(todo, latest, out_prefix)
    threshold = operating_threshold(load_detector(_local_model(model)), min_score)
    for run in runs:
        if run["model"] != _normalised(model) or run["min_score"] != threshold.value:
            raise ValueError(
                f"{out_prefix} holds run {run['run_id']} of {run['model']} at score >= {run['min_score']}, not "
                f"{_normalised(model)} at >= {threshold.value}: use another --out"
            )
        if run.get("host_mask") != host_mask:
            raise ValueError(
                f"{out_prefix} holds run {run['run_id']} with host mask {run.get('host_mask', '(none: an older version)')}, "
                f"not {host_mask}: use another --out"
            )
        if run.get("band_options", {}) != band_options:
            raise ValueError(
                f"{out_prefix} holds run {run['run_id']} with band options {run.get('band_options', {})}, "
                f"not {band_options}: use another --out"
            )
    run = None
    if todo:
        run = _run_pipeline(
            todo, run_id, model, out_prefix, threshold, batch_size, num_shards, pipeline_args, host_mask, band_options
        )
    merged = _merge([*runs, *([run] if run else [])], out_prefix, merge) if merge else ()
    return SurveyRun(n_inputs=len(items), n_already_done=len(items) - len(todo), threshold=threshold, run=run, merged=merged)


def _run_pipeline(
    todo: Sequence[SurveyInput],
    run_id: str,
    model: str,
    out_prefix: str,
    threshold: OperatingThreshold,
    batch_size: int,
    num_shards: int,
    pipeline_args: Sequence[str],
    host_mask: str,
    band_options: Mapping[str, Any],
) -> dict[str, Any]:
    """One run over `todo`: its inputs file, the pipeline, then its done manifest; returns the manifest."""
    run_prefix = f"{out_prefix}-{run_id}"
    inputs_file = f"{run_prefix}-inputs.csv"
    _write_inputs(todo, inputs_file)
    metadata = {
        b"gsfc_tf.model": _normalised(model).encode(), b"gsfc_tf.min_score": str(threshold.value).encode(),
        b"gsfc_tf.min_score_source": threshold.source.encode(),
    }
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
        items = (
            pipeline
            | "ReadInputs" >> beam.io.ReadFromText(inputs_file, skip_header_lines=1)
            | "ParseInputs" >> beam.Map(_parse_input_line)
        )
        handler = DetectorHandler(model, min_score=threshold.value, batch_size=batch_size, host_mask=host_mask)
        outputs = items | DetectClumps(handler, band_options)
        for name, schema in (("clumps", CLUMP_SCHEMA), ("images", IMAGE_SCHEMA)):
            outputs[name] | f"Write{name.title()}" >> beam.io.WriteToParquet(
                f"{run_prefix}-{name}", schema.with_metadata(metadata), file_name_suffix=".parquet", num_shards=num_shards
            )
    # Read back before the done manifest vouches for them.
    clump_shards = _shards(f"{run_prefix}-clumps-*-of-*.parquet")
    image_shards = _shards(f"{run_prefix}-images-*-of-*.parquet")
    statuses = [status for shard in image_shards for status in _read_table(shard, ["status"])["status"].to_pylist()]
    if len(statuses) != len(todo):
        raise ValueError(f"run {run_id} wrote {len(statuses)} image rows for {len(todo)} inputs; rerun to redo it")
    record = {
        "run_id": run_id, "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gsfc_tf_version": __version__, "model": _normalised(model), "min_score": threshold.value,
        "min_score_source": threshold.source, "host_mask": host_mask, "band_options": band_options,
        "inputs": inputs_file, "n_inputs": len(todo),
        "status_counts": {status: statuses.count(status) for status in IMAGE_STATUSES},
        "n_clumps": sum(pq.read_metadata(pa.BufferReader(_read_bytes(shard))).num_rows for shard in clump_shards),
        "clump_shards": clump_shards, "image_shards": image_shards,
    }
    with FileSystems.create(f"{run_prefix}-done.json") as file:
        file.write((json.dumps(record, indent=2) + "\n").encode())
    return record


def _merge(runs: Iterable[dict[str, Any]], out_prefix: str, format: str) -> tuple[str, ...]:
    """Writes every completed run's clumps and image statuses as one CSV or FITS table each.

    Each input appears once, with its latest run's image row: an earlier row was unreadable
    (`_latest_image_records`), so it has no clumps to drop.
    """
    runs = list(runs)
    clump_shards = [shard for run in runs for shard in run["clump_shards"]]
    n_rows = sum(run["n_clumps"] for run in runs)
    if n_rows > MERGE_MAX_ROWS:
        raise ValueError(
            f"{n_rows} clumps are more than {MERGE_MAX_ROWS} to merge on one machine; the catalogue is complete "
            f"in the Parquet shards listed by {out_prefix}-*-done.json"
        )
    position: dict[str, int] = {}
    for run in runs:
        for path in _read_input_paths(run["inputs"]):
            position.setdefault(path, len(position))
    clumps = [record for shard in clump_shards for record in _read_table(shard).to_pylist()]
    # Input order, then by decreasing score as the detector returns them: the order `predict` writes.
    clumps.sort(key=lambda record: (position[record["path"]], -record["score"]))
    images = sorted(_latest_image_records(runs, out_prefix).values(), key=lambda record: position[record["path"]])
    names = [field.name for field in dataclasses.fields(CatalogueRow)]
    image_names = [field.name for field in dataclasses.fields(SurveyImageRow)]
    outputs = _merged_paths(out_prefix, format)
    with tempfile.TemporaryDirectory() as tmp:
        clumps_file = catalogue.write_catalogue(
            [CatalogueRow(**{name: record[name] for name in names}) for record in clumps], Path(tmp) / "clumps", format=format
        )
        image_rows = [SurveyImageRow(**{name: record[name] for name in image_names}) for record in images]
        images_file = catalogue.write_image_table(image_rows, Path(tmp) / "images", format=format, row_type=SurveyImageRow)
        for local, output in zip((clumps_file, images_file), outputs):
            with open(local, "rb") as src, FileSystems.create(output) as dst:
                shutil.copyfileobj(src, dst)
    return outputs
