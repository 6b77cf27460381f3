"""Risk models: reference scores, ONNX builds and signed manifests.

Layout (docs/models.md):

* ``news2``, ``bp``, ``pews``, ``imci``, ``pregnancy``, ``events``: reference implementations in
  plain Python, citing their source (docs/scores.md says which applies to whom).
* ``tables``: the same scoring tables as data, from which ``build`` makes ONNX graphs.
* ``manifest``, ``signing``: the signed manifest format, shared by the build and the gateway.
* ``build`` / ``train``: workstation-only scripts (need the ``models`` extra: onnx, skl2onnx,
  scikit-learn); the gateway needs only onnxruntime, numpy and cryptography.
* ``built/``: the committed ``.onnx`` files and their ``.manifest.json``.

Nothing here imports anything of ours outside this package (DESIGN §2).
"""

from pathlib import Path

BUILT_DIR = Path(__file__).resolve().parent / "built"
KEYS_DIR = Path(__file__).resolve().parent / "keys"
