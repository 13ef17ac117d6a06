"""Triton Python-backend entry point of the ``preview`` model (hole filling with OpenCV inpainting; not GEN3C).

Needs ``objvid[diffusion]`` installed in the Python that runs Triton's backend stub. All logic lives in
``objvid.diffusion.triton_io`` (shared with the PyTriton server); tensors are listed in docs/diffusion.md.
"""

import triton_python_backend_utils as pb_utils

from objvid.diffusion.triton_io import PythonBackendModel


class TritonPythonModel(PythonBackendModel):
    """Decoupled: streams PROGRESS responses while generating, then VIDEO, then the final flag."""

    def __init__(self):
        super().__init__(pb_utils)
