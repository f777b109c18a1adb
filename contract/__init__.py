"""The artifact contract: the names, formats and checks of the pipeline's outputs (`models/*`,
`data/prepared/*`) and the one reader of `dvc.lock`. Training writes through these types, and
serving and the image tooling read through them, so the coupling between them shows as imports
instead of repeated path strings and hand-written checks.

It imports only the standard library and PyYAML: it ships in the image beside `api/`.

    contract.paths      file names, vocabularies, format versions
    contract.errors     ContractError (one line naming the file and the field) and the field checks
    contract.dvclock    dvc.lock's reader; an artifact's bytes checked against it before any use
    contract.features   Feature: one record for schema.json's and metadata.json's features
    contract.schema     Schema: data/prepared/schema.json (stage prepare)
    contract.metadata   Metadata: models/metadata.json (stage evaluate)
    contract.serving    ServingPlan: models/serving.json (stage export), checked against Metadata
    contract.dates      a date feature's parts;  contract.estimators: estimators of other libraries

Each type has `from_json` (the checks, one `ContractError` line naming the file and the key) and
`to_json` (the document the pipeline writes, key for key; JSON with floats via repr). The formats
are in each module's docstring; the rest are:

`models/model.joblib` (stage train): the fitted scikit-learn Pipeline (preprocessing built from the
    schema, then the estimator params.yaml names). Loaded only after its md5 matched dvc.lock and its
    sha256 matched `models/model.sha256`: `load_verified_pickle` everywhere outside the service
    (stages, tests, benchmarks), `verified_pickle_bytes` in it; `dvc repro` records train's outputs
    in dvc.lock before evaluate and export run.

`models/model.sha256` (stage train, `cache: false`: tracked by git, not by DVC's cache or remote):
    `sha256sum` lines, `<64 hex>  models/model.joblib`, for every pickle train writes. md5 (all DVC
    records) has cheap identical-prefix collisions: whoever can write the DVC remote can make a twin
    of the pickle with the same md5, which `dvc pull` and the md5 check accept. The sha256 comes
    from git, beside dvc.lock, so the twin is refused before a byte of it is unpickled.

`models/model.onnx` (stage export): the skl2onnx graph of the whole pipeline; zero bytes when the
    model takes the exact (scikit-learn) path.

`reports/metrics.json` (stage evaluate): classification {accuracy, balanced_accuracy, roc_auc, f1,
    precision, recall, log_loss, n_test} (binary: of `evaluate.positive_class`; multi-class: macro
    averages, ROC AUC one-vs-rest); regression {rmse, mae, r2, n_test}.
`reports/plots/{confusion,roc,residuals}.json`: lists of points; the ones that do not apply to the
    task are empty lists (DVC needs every declared output to exist).
"""

from __future__ import annotations

from contract.dvclock import (
    load_dvc_lock,
    load_verified_pickle,
    locked_md5,
    locked_outs,
    md5_hex,
    parse_dvc_lock,
    read_bytes,
    recorded_sha256,
    sha256_file,
    sha256_hex,
    sha256_lines,
    verified_bytes,
    verified_pickle_bytes,
)
from contract.errors import ContractError
from contract.paths import (
    CONFUSION_FILE,
    DVC_LOCK_FILE,
    FEATURE_KINDS,
    METADATA_FILE,
    METADATA_SCHEMA_VERSION,
    METRICS_FILE,
    MISSING_STRING,
    MODEL_FILE,
    MODEL_SHA256_FILE,
    ONNX_FILE,
    PARAMS_FILE,
    PLOTS_DIR,
    RESIDUALS_FILE,
    ROC_FILE,
    SCHEMA_FILE,
    SCHEMA_VERSION,
    SERVING_FILE,
    SERVING_PATHS,
    SERVING_SCHEMA_VERSION,
    TASKS,
    TEST_CSV,
    TRAIN_CSV,
)

__all__ = [
    "CONFUSION_FILE",
    "DVC_LOCK_FILE",
    "FEATURE_KINDS",
    "METADATA_FILE",
    "METADATA_SCHEMA_VERSION",
    "METRICS_FILE",
    "MISSING_STRING",
    "MODEL_FILE",
    "MODEL_SHA256_FILE",
    "ONNX_FILE",
    "PARAMS_FILE",
    "PLOTS_DIR",
    "RESIDUALS_FILE",
    "ROC_FILE",
    "SCHEMA_FILE",
    "SCHEMA_VERSION",
    "SERVING_FILE",
    "SERVING_PATHS",
    "SERVING_SCHEMA_VERSION",
    "TASKS",
    "TEST_CSV",
    "TRAIN_CSV",
    "ContractError",
    "load_dvc_lock",
    "load_verified_pickle",
    "locked_md5",
    "locked_outs",
    "md5_hex",
    "parse_dvc_lock",
    "read_bytes",
    "recorded_sha256",
    "sha256_file",
    "sha256_hex",
    "sha256_lines",
    "verified_bytes",
    "verified_pickle_bytes",
]
