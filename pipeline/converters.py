"""Two fixes to skl2onnx 1.20's converters, registered over its own before a conversion, and
onnxmltools' converters for the XGBoost and LightGBM estimators (register_other_libraries), so that
their models convert inside the same pipeline graph as the preprocessing.

- SimpleImputer on numbers: skl2onnx emits the ai.onnx.ml `Imputer` op, which onnxruntime
  implements for float32 only and whose fill values are float32 even in a double graph (so an
  imputed gap would differ from scikit-learn's). Replaced by IsNaN + Where with the statistics in
  the graph's own precision: exact in double and float alike.
- HistGradientBoosting{Classifier,Regressor}: skl2onnx passes the trees' `missing_go_to_left`
  flags as Python/numpy booleans into an integer-list attribute, which onnx (protobuf) refuses:
  "AttributeProto.ints: Expected an int, got a boolean". The wrapped converter casts them to int
  on their way into the node; the graph is otherwise the converter's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from skl2onnx.common._registration import _converter_pool, register_converter  # type: ignore[import-untyped]
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType  # type: ignore[import-untyped]
from skl2onnx.proto import onnx_proto  # type: ignore[import-untyped]

Converter = Callable[[Any, Any, Any], Any]
_ORIGINAL: dict[str, Any] = {}


def _numeric_imputer(scope: Any, operator: Any, container: Any) -> None:
    source = operator.inputs[0]
    double = isinstance(source.type, DoubleTensorType)
    statistics = operator.raw_operator.statistics_.astype(np.float64 if double else np.float32)
    fill = scope.get_unique_variable_name("imputed_values")
    elem = onnx_proto.TensorProto.DOUBLE if double else onnx_proto.TensorProto.FLOAT
    container.add_initializer(fill, elem, [1, len(statistics)], statistics.tolist())
    is_nan = scope.get_unique_variable_name("is_nan")
    container.add_node("IsNaN", [source.full_name], [is_nan], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node(
        "Where",
        [is_nan, fill, source.full_name],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Where"),
    )


def _imputer(scope: Any, operator: Any, container: Any) -> Any:
    op = operator.raw_operator
    numeric_nan = len(operator.inputs) == 1 and not isinstance(operator.inputs[0].type, StringTensorType)
    if numeric_nan and isinstance(op.missing_values, float) and np.isnan(op.missing_values):
        return _numeric_imputer(scope, operator, container)
    return _ORIGINAL["SklearnSimpleImputer"](scope, operator, container)


def _bool_lists_as_ints(original: Converter) -> Converter:
    def convert(scope: Any, operator: Any, container: Any) -> Any:
        add_node = container.add_node

        def add_node_with_int_flags(*args: Any, **attrs: Any) -> Any:
            for key, value in attrs.items():
                if isinstance(value, list | np.ndarray) and any(
                    isinstance(v, bool | np.bool_) for v in value
                ):
                    attrs[key] = [int(v) for v in value]
            return add_node(*args, **attrs)

        container.add_node = add_node_with_int_flags
        try:
            return original(scope, operator, container)
        finally:
            del container.add_node  # back to the class's own method

    return convert


def register_fixes() -> None:
    """Idempotent: register the fixed converters (keeping each one's allowed options)."""
    if _ORIGINAL:
        return
    fixes: dict[str, Callable[[Converter], Converter]] = {
        "SklearnSimpleImputer": lambda _original: _imputer,
        "SklearnHistGradientBoostingClassifier": _bool_lists_as_ints,
        "SklearnHistGradientBoostingRegressor": _bool_lists_as_ints,
    }
    for alias, fix in fixes.items():
        original = _converter_pool[alias]
        _ORIGINAL[alias] = original
        register_converter(alias, fix(original), overwrite=True, options=original.get_allowed_options())


def register_other_libraries() -> None:
    """Idempotent: onnxmltools' converters and skl2onnx's shape calculators for the estimators of
    pipeline.estimator.OTHER_LIBRARIES, registered with skl2onnx (its documented way to convert
    a pipeline that ends in one of them). Each library only when installed."""
    from skl2onnx import update_registered_converter  # type: ignore[import-untyped]
    from skl2onnx.common.shape_calculator import (  # type: ignore[import-untyped]
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import (  # type: ignore[import-untyped]
            convert_xgboost,
        )
        from xgboost import XGBRegressor

        from contract.estimators import LabelledXGBClassifier
    except ImportError:
        pass
    else:
        update_registered_converter(
            LabelledXGBClassifier,
            "LockstepXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
        )
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (  # type: ignore[import-untyped]
            convert_lightgbm,
        )
    except ImportError:
        return
    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options=classifier_options,
    )
    update_registered_converter(
        LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm
    )
