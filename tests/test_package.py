"""The package surface: lazy public names, light imports, and no import cycle inside gsfc_tf."""

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import gsfc_tf

PACKAGE_DIR = Path(gsfc_tf.__file__).parent


def test_public_names_resolve_to_the_implementations():
    from gsfc_tf.backbones import build_backbone
    from gsfc_tf.models import build_detector
    from gsfc_tf.trainer import train

    assert gsfc_tf.build_backbone is build_backbone
    assert gsfc_tf.build_detector is build_detector
    assert gsfc_tf.train is train


def test_importing_the_package_and_cli_does_not_import_tensorflow():
    # The Zoobot converter must import torch before TensorFlow (a triton crash otherwise).
    code = "import sys, gsfc_tf, gsfc_tf.cli; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _gsfc_tf_imports(path: Path, modules: set[str]) -> set[str]:
    """The gsfc_tf modules `path` imports anywhere: at the top, deferred in functions, for type checking."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from package import module` imports the module; `from module import name`, the module.
            imported |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {module for module in imported if module in modules and module != name}


def test_gsfc_tf_has_no_import_cycle():
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph = {_module_name(path): _gsfc_tf_imports(path, modules) for path in paths}
    assert "gsfc_tf.detector" in graph["gsfc_tf.export"], "the walk must see export's import of the detector"
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_importing_the_catalogue_loads_neither_matplotlib_nor_tfds():
    code = (
        "import sys, gsfc_tf.catalogue; loaded = {'matplotlib', 'tensorflow_datasets'} & set(sys.modules); "
        "assert not loaded, f'{loaded} imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
