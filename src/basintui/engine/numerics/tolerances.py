"""The tolerances every rank decision shares (DESIGN §1), in one place: the spectrum of G, the
Hessian and its Gauss-Newton term, the partitions of inputs and the level-set probe import them."""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)  # float64's machine epsilon: every rank is decided in float64
RTOLS = ("1e-3", "1e-6", "1e-9")  # ranks are also reported at these rtols (σ > rtol·σ₁), keyed as written
NEAR_FACTOR = 2.0  # a value within this factor of its threshold (either side) is "near": rounding decides it
