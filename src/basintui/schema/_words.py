"""The few-word values of a report (Literal types), shared by its sections."""

from __future__ import annotations

from typing import Literal

Regime = Literal["over", "under", "square"]
On = Literal["outputs", "logits", "probabilities"]
LossName = Literal["mse", "bce", "ce"]
LossHessianKind = Literal["identity", "diagonal", "full"]
TrainingStatus = Literal["converged", "max_steps", "diverged", "cancelled"]
Claim3Verdict = Literal["holds", "holds_up_to_residual", "fails", "not_applicable"]
GovernedBy = Literal["resolution floor", "G's threshold"]
CollisionKind = Literal["none", "linear", "activation", "both"]
GroupKind = Literal["identical", "zero", "combination", "within_input"]
LocalMode = Literal["immersion", "full", "sampled"]
ErrorKind = Literal["input", "runtime"]

# the preset's words (basintui.config keeps the same tuples; tests/test_schema.py checks they agree)
DataKind = Literal["gaussian", "xor", "moons", "circles", "parity", "sine", "digits", "file", "modular"]
Layout = Literal["flat", "image"]
TargetKind = Literal["teacher", "random", "self", "labels"]
ModelKind = Literal["mlp", "python", "cnn", "transformer", "resmlp"]
Activation = Literal["relu", "tanh", "gelu", "sigmoid", "leaky_relu", "linear"]
Optimizer = Literal["adam", "sgd", "lbfgs"]
DeviceName = Literal["auto", "cpu", "cuda"]
DType = Literal["float64", "float32"]
HessianSetting = Literal["auto", "dense", "lanczos", "off"]
CeOutput = Literal["logits", "probabilities"]
RouteSetting = Literal["auto", "explicit", "factored", "streamed", "matfree"]


__all__ = [
    "Activation", "CeOutput", "Claim3Verdict", "CollisionKind", "DType", "DataKind", "DeviceName",
    "ErrorKind", "GovernedBy", "GroupKind", "HessianSetting", "LocalMode", "LossHessianKind", "LossName", "Layout",
    "ModelKind", "On", "Optimizer", "Regime", "RouteSetting", "TargetKind", "TrainingStatus",
]
