"""`make bench-profile`: where a 1,000-row request's time goes, in this tree and a baseline ref.

Each phase is timed in-process on `make bench-batch`'s bodies (the default model's example row
1,000 times), with the service's own functions, this tree's and the baseline's (its api/ and
contract/ from git archive) in separate processes run one after the other:
  count     the pre-parse byte counts and their bounds (BodyTokens)
  parse     the JSON parse: api.dense_json's where it applies (a positional batch of numbers, V2
            float tensors), else orjson's (api.body.load_json)
  validate  the parsed document to a Batch (the /predict parser, or the V2 codec's decode)
  score     the runner (onnxruntime), scores out
  answer    the finite check and the response bytes
Then each tree is served for real (`python -m api`, one worker) and the same bodies are sent one
after another on one keep-alive connection: `served` is the server's CPU (user + system, from /proc)
per request, and `http` (uvicorn, the middleware, the socket) is what it adds to the phases' total.
Writes bench/results/request_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from harness import DEFAULT, REPO_ROOT, Server, running_server

RESULTS = REPO_ROOT / "bench" / "results"
PHASES = ("count", "parse", "validate", "score", "answer")
FORM_BODIES = {"predict_named": "named", "predict_positional": "positional", "v2": "v2"}
FORMS = tuple(FORM_BODIES)
SERVED_REQUESTS = 500  # per form: /proc counts CPU in 10 ms ticks, so 20 µs per request at worst


def profile() -> dict[str, dict[str, float]]:
    """µs per phase per form, with whichever api/ is first on sys.path (run in a child process)."""
    from api.model import load_model
    from api.settings import Settings

    try:
        from api.v2_codec import V2Codec
    except ImportError:  # a baseline from before the codec had its own module
        from api.v2 import V2Codec  # type: ignore[attr-defined]
    model = load_model(Settings())
    codec = V2Codec(model, "lockstep")
    return {form: _phases(model, codec, form, body) for form, body in form_bodies().items()}


def form_bodies() -> dict[str, bytes]:
    """Each form's 1,000-row body, as make bench-batch sends it."""
    from bench.batch_bench import lockstep_documents

    documents = lockstep_documents(DEFAULT)
    return {form: json.dumps(documents[name]).encode() for form, name in FORM_BODIES.items()}


def _phases(model: Any, codec: Any, form: str, body: bytes) -> dict[str, float]:
    """µs per phase of one body, and their total."""
    from api.body import load_json
    from api.predict import encode_predictions

    try:
        from api.model import check_finite
    except ImportError:  # a baseline from before the one score(batch)
        from api.predict import check_finite  # type: ignore[attr-defined,no-redef]
    import api
    from api.tokens import BodyTokens
    from bench.serve_bench import median_seconds

    # A baseline from before the dense parse has orjson's only (and the editable install would
    # otherwise import this tree's module).
    dense = (Path(api.__file__).parent / "dense_json.py").is_file()
    if dense:
        from api.dense_json import v2_request

    def us(call: Any) -> float:
        return median_seconds(call, 20) * 1e6

    def parse() -> Any:
        """What the service parses the body into, as it does: the dense parse where it applies (for
        /predict, its batch: the dense parse is the validation too), else orjson's document."""
        parsed: Any = None
        if dense and form == "v2":
            parsed = v2_request(body, frozenset({"FP16", "FP32", "FP64"}))
        elif dense:
            parsed = model.parser.dense(body, tokens)
        return parsed if parsed is not None else load_json(body)[0]

    tokens = BodyTokens.of(body)
    if form == "v2":
        doc = parse()
        batch, outputs = codec.decode(doc, tokens)
        count = us(lambda: BodyTokens.of(body).excess(body, codec.max_strings, codec.max_values))
        validate = us(lambda: codec.decode(doc, tokens))
    else:
        batch = model.parser.parse(body)
        count = us(lambda: model.parser._refuse_excess(body, BodyTokens.of(body)))
        # The parser's own total, less the counting and the parse it includes.
        # 0 when the dense parse is the validation too (the difference is then noise).
        validate = max(0.0, us(lambda: model.parser.parse(body)) - count - us(parse))
    scores = model.runner.predict(batch)

    def answer() -> bytes:
        check_finite(scores)
        if form == "v2":
            return bytes(codec.encode(scores, outputs, batch.rows, None))
        return bytes(encode_predictions(model.version, model.classes, scores))

    phases = {
        "count": count,
        "parse": us(parse),
        "validate": validate,
        "score": us(lambda: model.runner.predict(batch)),
        "answer": us(answer),
    }
    return phases | {"total": sum(phases.values())}


def run_child(root: Path) -> dict[str, Any]:
    """`profile()` in a fresh process whose api/ and contract/ are `root`'s."""
    env = {**os.environ, **DEFAULT.env(), "PYTHONPATH": os.pathsep.join([str(root), str(REPO_ROOT)])}
    env["LOCKSTEP_DVC_LOCK_PATH"] = str(DEFAULT.lock)
    done = subprocess.run(
        [sys.executable, "-m", "bench.request_profile", "--child"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"request_profile: the child for {root} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def _post(connection: http.client.HTTPConnection, path: str, body: bytes, form: str) -> None:
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    reply = connection.getresponse()
    answer = reply.read()
    if reply.status != 200:
        raise SystemExit(f"request_profile: {form} got {reply.status}: {answer[:300]!r}")


def served(server: Server, bodies: dict[str, bytes]) -> dict[str, float]:
    """Server CPU µs per request of each form, sent one after another on one keep-alive connection
    (after 20 unmeasured ones), so the figure is the work of one request with nothing queued."""
    from bench.batch_bench import V2_INFER, tree_cpu_seconds

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    cpu_us = {}
    for form, body in bodies.items():
        path = V2_INFER if form == "v2" else "/predict"
        for _ in range(20):
            _post(connection, path, body, form)
        before = tree_cpu_seconds(server.process.pid)
        for _ in range(SERVED_REQUESTS):
            _post(connection, path, body, form)
        cpu_us[form] = (tree_cpu_seconds(server.process.pid) - before) / SERVED_REQUESTS * 1e6
    connection.close()
    return cpu_us


def served_both(baseline: str, scratch: Path) -> dict[str, dict[str, float]]:
    """`served` for the baseline's api/ and this tree's, on the same bodies as the phases."""
    from bench.batch_bench import baseline_server

    bodies = form_bodies()
    with baseline_server(baseline, DEFAULT, 1, scratch / "baseline.log") as server:
        base = served(server, bodies)
    with running_server(DEFAULT, log=scratch / "tree.log", LOCKSTEP_WORKERS="1") as server:
        tree = served(server, bodies)
    return {"baseline": base, "tree": tree}


def table(results: dict[str, Any]) -> str:
    lines = [
        f"Where a 1,000-row request's time goes, in-process (µs, median); baseline = "
        f"`{results['baseline_ref']}`'s api/ in the same run.",
        "",
        "Served: the server's CPU per request over HTTP, one request at a time; http = served - total.",
        "",
        "| form | code | " + " | ".join(PHASES) + " | total | served | http |",
        "| --- | --- | " + " | ".join("---" for _ in PHASES) + " | --- | --- | --- |",
    ]
    for form in FORMS:
        for code in ("baseline", "tree"):
            row = results[code][form]
            cells = " | ".join(f"{row[p]:.0f}" for p in (*PHASES, "total"))
            cpu = results["served"][code][form]
            name = "this tree" if code == "tree" else "baseline"
            lines.append(f"| {form} | {name} | {cells} | {cpu:.0f} | {cpu - row['total']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git ref whose api/ is the baseline")
    parser.add_argument("--out", type=Path, default=RESULTS / "request_profile.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(profile()))
        return 0
    from bench.serve_bench import write_results

    with tempfile.TemporaryDirectory(prefix="lockstep-profile-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", args.baseline, "api", "contract"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        results = {
            "baseline_ref": args.baseline,
            "baseline": run_child(Path(tmp)),
            "tree": run_child(REPO_ROOT),
        }
        scratch = Path(tmp) / "served"
        scratch.mkdir()
        results["served"] = served_both(args.baseline, scratch)
    write_results(args.out, results, table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
