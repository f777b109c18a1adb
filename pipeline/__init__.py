"""DVC training pipeline: prepare -> train -> evaluate, and export (the ONNX graph and the serving
plan). Each stage is a module with a pure core and a thin `main()`; `python -m pipeline STAGE`
runs one (dvc.yaml's commands). The files they write are described in `contract`."""
