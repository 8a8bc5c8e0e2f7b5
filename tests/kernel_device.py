"""What the kernel tests share: the device they run on, and the mark that skips them where
Triton can run neither compiled (CUDA) nor interpreted (TRITON_INTERPRET=1)."""

import pytest
import torch

from gocram.kernels.availability import unsupported_reason

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
UNSUPPORTED = unsupported_reason(DEVICE)
needs_kernels = pytest.mark.skipif(UNSUPPORTED is not None,
                                   reason=f"needs CUDA or TRITON_INTERPRET=1: {UNSUPPORTED}")
