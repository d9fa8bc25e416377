"""`gsfc-tf export`: a trained model as a TF Serving SavedModel (`EXPORT_DIR/<version>`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["configure_parser", "run"]


def configure_parser(parser) -> None:
    parser.add_argument("--model", required=True, help="training run directory (holding model.keras) or a .keras file")
    parser.add_argument("--out", required=True, help="version directory to write, e.g. exports/gsfc/1")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version directory")


def run(args) -> int:
    import keras

    import gsfc_tf.models  # noqa: F401  (registers FasterRCNN for deserialisation)
    from gsfc_tf.export import BYTES_SIGNATURE, TENSOR_SIGNATURE, check_export_dir, export_saved_model

    model_path = Path(args.model)
    model_path = model_path / "model.keras" if model_path.is_dir() else model_path
    if not (model_path.is_file() and model_path.suffix == ".keras"):
        raise SystemExit(f"gsfc-tf export: {args.model} is neither a run directory with model.keras nor a .keras file.")
    try:
        check_export_dir(args.out, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as error:
        raise SystemExit(f"gsfc-tf export: {error}") from None
    model = keras.saving.load_model(model_path, compile=False)
    export_dir = export_saved_model(model, args.out, overwrite=args.overwrite)
    print(f"Exported {model_path} to {export_dir} (signatures {BYTES_SIGNATURE}, {TENSOR_SIGNATURE})")
    return 0
