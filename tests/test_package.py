"""The package surface: lazy public names, and `import gsfc_tf` stays free of TensorFlow."""

import subprocess
import sys

import gsfc_tf


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
