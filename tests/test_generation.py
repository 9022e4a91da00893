"""The generation engine through the CLI: answers in request order, one computation per distinct
request, batches grouped by settings, a response store keyed by the model (a second model never
reuses the first one's answers), resume after SIGKILL, per-sample records with the prompt and the
raw output, and one-line errors for models that break the contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import GenerationRequest
from harness.cli import main
from harness.generation import Generations, cut_at_stop
from harness.records import read_records
from harness.result import read_result
from harness.testing import tiny_model

from test_run import assert_clean_failure

PLUGIN = '''
import json
import os
import time
from pathlib import Path

import numpy as np

from harness import (DatasetSpec, Generation, GenerationRequest, Loglikelihood, MetricSpec, ModelSpec, TaskKindSpec,
                     hookimpl)
from harness.testing import tiny_model

LOG = os.environ.get("GEN_LOG")


class Parrot:
    """Answers the last word of the prompt, prefixed by its name; logs every batch it computes."""

    def __init__(self, name, how):
        self.inner, self.name, self.how = tiny_model({"generate", "loglikelihood"}), name, how
        self.chat_template = os.environ.get("GEN_TEMPLATE")

    def provenance(self):
        return {**self.inner.provenance(), "fingerprint": self.name * 8}

    def n_parameters(self):
        return 0

    def generate(self, requests):
        if LOG:
            with open(LOG, "a") as log:
                log.write(json.dumps([f"{r.prompt}|{r.max_new_tokens}" for r in requests]) + "\\n")
        if os.environ.get("GEN_SLOW"):
            time.sleep(float(os.environ["GEN_SLOW"]))
        if self.how == "short":
            return [Generation("x")]
        if self.how == "raises":
            raise KeyError("tokenizer lost")
        if self.how == "positive":
            return [Loglikelihood(0.5, 1, True)]
        return [Generation(f"{self.name}:{r.prompt.split()[-1]}", n_tokens=2) for r in requests]

    def loglikelihood(self, requests):
        return self.inner.loglikelihood(requests)


def load(spec, ctx):
    return Parrot(spec.args["name"], spec.args["how"])


@hookimpl
def harness_register_models():
    return [ModelSpec(f"parrot:{name}", "harness_genplugin:load", {"generate", "loglikelihood"},
                      args={"name": name, "how": how}, code_version="1")
            for name, how in (("a", "ok"), ("b", "ok"), ("short", "short"), ("raises", "raises"))]


def build(config, split, execution):
    import datasets
    from PIL import Image

    n = int(config.get("n", 10))
    return datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (8, 8), (20 * i, 0, 0)) for i in range(n)],
         "word": [f"w{i % 7}" for i in range(n)]},
        features=datasets.Features({"image": datasets.Image(), "word": datasets.Value("string")}))


@hookimpl
def harness_register_datasets():
    return [DatasetSpec("gen_words", "harness_genplugin:build")]


class Echo:
    def evaluate(self, ctx):
        rows = ctx.rows()
        settings = [{}, {"max_new_tokens": 4}]
        requests = [GenerationRequest(f"say {'the word ' * (i % 3)}{word}", (image,), **settings[i % 2])
                    for i, (word, image) in enumerate(zip(rows["word"], rows["image"]))]
        answers = ctx.generate(requests)
        predictions = np.array([a.text.split(":")[-1] for a in answers], dtype=object)
        return {"predictions": predictions, "targets": np.array(rows["word"], dtype=object),
                "prompts": np.array([r.prompt for r in requests], dtype=object),
                "raw": np.array([a.text for a in answers], dtype=object)}


def exact(predictions, targets):
    return np.array([p == t for p, t in zip(predictions, targets)], dtype=float)


@hookimpl
def harness_register_task_kinds():
    return [TaskKindSpec("echo", "harness_genplugin:Echo", {"generate"}, {"predictions", "targets", "prompts", "raw"},
                         columns=("image",), records=("prompts", "raw", "targets"))]


@hookimpl
def harness_register_metrics():
    return [MetricSpec("exact", "harness_genplugin:exact", ("predictions", "targets"), interval="wilson")]
'''

TASK = """name: echo_words
version: 1
kind: echo
dataset: {builder: gen_words, config: {n: %d}, split: test}
columns: {image: image}
metrics: [exact]
main_score: exact
"""


@pytest.fixture()
def genplugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "harness_genplugin.py").write_text(PLUGIN)
    (folder / "echo_words.yaml").write_text(TASK % 10)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("GEN_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("PYTHONPATH", f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    sys.modules.pop("harness_genplugin", None)
    yield folder
    sys.modules.pop("harness_genplugin", None)


def run(tmp_path: Path, folder: Path, model: str = "parrot:a", *extra: str, out: str = "out") -> int:
    return main(["run", "-p", "harness_genplugin", "--quiet", "--model", model, "--task", str(folder / "echo_words.yaml"),
                 "--output-dir", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"), "--batch-size", "3",
                 *extra])


def calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_answers_in_order_batched_by_settings_and_cached(genplugin: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert run(tmp_path, genplugin) == 0
    path = Path(capsys.readouterr().out.strip())
    doc = read_result(path)
    assert doc["metrics"]["exact"]["value"] == 1.0  # every answer went back to its own request
    batches = calls(tmp_path)
    prompts = [p for batch in batches for p in batch]
    assert len(prompts) == len(set(prompts)) == 10  # each request computed once, none again
    assert all(len(batch) <= 3 for batch in batches)
    for batch in batches:  # equal settings in a batch, longest prompt first
        assert len({p.split("|")[1] for p in batch}) == 1
        assert [len(p) for p in batch] == sorted((len(p) for p in batch), reverse=True)
    assert doc["cache"]["response_misses"] == 10 and doc["cache"]["response_hits"] == 0
    assert doc["cost"]["requests_per_s"] > 0 and doc["cost"]["tokens_per_s"] > 0
    records = read_records(path, doc)
    assert [r["fields"]["raw"] for r in records] == [f"a:w{i % 7}" for i in range(10)]
    assert records[3]["fields"]["prompts"] == "say w3" and records[3]["fields"]["targets"] == "w3"
    # the same command again: every answer from the store, nothing computed
    assert run(tmp_path, genplugin) == 0
    again = read_result(Path(capsys.readouterr().out.strip()))
    assert len(calls(tmp_path)) == len(batches) and again["cache"]["response_hits"] == 10
    assert again["metrics"] == doc["metrics"]


def test_a_second_model_never_reuses_the_first_ones_answers(genplugin: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(tmp_path, genplugin, "parrot:a") == 0
    assert run(tmp_path, genplugin, "parrot:b") == 0
    paths = [Path(p) for p in capsys.readouterr().out.split()]
    a, b = (read_result(p) for p in paths)
    assert b["cache"]["response_hits"] == 0 and b["cache"]["response_misses"] == 10
    assert all(r["fields"]["raw"].startswith("b:") for r in read_records(paths[1], b))
    # another chat template is another response set
    monkeypatch.setenv("GEN_TEMPLATE", "sha256:" + "0" * 64)
    sys.modules.pop("harness_genplugin", None)
    assert run(tmp_path, genplugin, "parrot:a") == 0
    assert read_result(Path(capsys.readouterr().out.strip()))["cache"]["response_misses"] == 10


def test_no_cache_writes_no_responses(genplugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(tmp_path, genplugin, "parrot:a", "--no-cache") == 0
    assert not (tmp_path / "cache" / "responses").exists()


@pytest.mark.parametrize(("model", "needle"), [
    ("parrot:short", "generate returned 1 answers for 3 requests"),
    ("parrot:raises", "model 'parrot:raises': generate raised KeyError"),
])
def test_models_breaking_the_contract_are_one_line(genplugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   model: str, needle: str) -> None:
    code = run(tmp_path, genplugin, model)
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", needle)


def test_sigkill_mid_run_resumes_where_it_stopped(genplugin: Path, tmp_path: Path) -> None:
    (genplugin / "echo_words.yaml").write_text(TASK % 24)
    argv = [sys.executable, "-m", "harness", "run", "-p", "harness_genplugin", "--quiet", "--model", "parrot:a",
            "--task", str(genplugin / "echo_words.yaml"), "--cache-dir", str(tmp_path / "cache"), "--batch-size", "2"]
    env = {**os.environ, "GEN_SLOW": "0.3"}
    proc = subprocess.Popen([*argv, "--output-dir", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(calls(tmp_path)) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(calls(tmp_path))
    assert 4 <= done_before < 12, "the run was not killed mid-way"
    finished = subprocess.run([*argv, "--output-dir", str(tmp_path / "resumed")], env={**os.environ},
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    computed = [p for batch in calls(tmp_path) for p in batch]
    assert len(computed) <= 24 + 2 and len(set(computed)) == 24  # at most the batch in flight again
    resumed_path = Path(finished.stdout.strip())
    resumed = read_result(resumed_path)
    assert resumed["cache"]["response_hits"] >= done_before * 2 - 2
    fresh = subprocess.run([*argv, "--no-cache", "--output-dir", str(tmp_path / "fresh")], env={**os.environ},
                           capture_output=True, text=True, timeout=120)
    fresh_path = Path(fresh.stdout.strip())
    assert resumed["metrics"] == read_result(fresh_path)["metrics"]
    assert resumed_path.with_name(resumed_path.name.replace(".json", ".samples.jsonl")).read_text() == \
        fresh_path.with_name(fresh_path.name.replace(".json", ".samples.jsonl")).read_text()


def test_the_engine_directly() -> None:
    model = tiny_model({"generate", "loglikelihood"})
    engine = Generations(model, batch_size=2)
    requests = [GenerationRequest(f"pick one of red green blue {i}") for i in range(5)]
    direct = model.generate(requests)
    assert [g.text for g in engine.generate(requests)] == [g.text for g in direct]
    assert cut_at_stop("red. green", (".",)) == "red" and cut_at_stop("red", ("x",)) == "red"
    with pytest.raises(ValueError, match="placeholders"):
        GenerationRequest("<image> and <image>", images=(1,))


def test_rescore_recomputes_from_records_without_the_model(genplugin: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    (genplugin / "harness_genplugin.py").write_text(PLUGIN + '''

def prefix(predictions, targets):
    return np.array([str(t).startswith(str(p)[:1]) for p, t in zip(predictions, targets)], dtype=float)


@hookimpl
def harness_register_metrics():
    return [MetricSpec("exact", "harness_genplugin:exact", ("predictions", "targets"), interval="wilson"),
            MetricSpec("raw_exact", "harness_genplugin:exact", {"predictions": "raw", "targets": "targets"}),
            MetricSpec("needs_predictions", "harness_genplugin:exact", ("predictions", "targets"))]
'''.replace('''@hookimpl
def harness_register_metrics():
    return [MetricSpec("exact", "harness_genplugin:exact", ("predictions", "targets"), interval="wilson")]
''', "", 1))
    sys.modules.pop("harness_genplugin", None)
    assert run(tmp_path, genplugin) == 0
    original = Path(capsys.readouterr().out.strip())
    before = original.read_bytes()
    # the raw outputs ("a:w3") never equal the targets: another metric over the records gives another score
    assert main(["rescore", "-p", "harness_genplugin", str(original), "--metric", "raw_exact",
                 "--output-dir", str(tmp_path / "out")]) == 0
    rescored_path = Path(capsys.readouterr().out.strip())
    rescored = read_result(rescored_path)
    assert rescored_path != original and original.read_bytes() == before
    assert rescored["main_score"] == {"name": "raw_exact", "value": 0.0}
    assert rescored["rescored"]["from"] == original.name and rescored["rescored"]["metrics"] == ["raw_exact"]
    assert [r["fields"] for r in read_records(rescored_path, rescored)] == \
        [r["fields"] for r in read_records(original, read_result(original))]
    # a metric whose inputs the records do not keep: one line
    code = main(["rescore", "-p", "harness_genplugin", str(original), "--metric", "needs_predictions",
                 "--output-dir", str(tmp_path / "again")])
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "again", "needs output(s) ['predictions']")


def test_two_gloo_ranks_share_the_requests_and_equal_one_process(genplugin: Path, tmp_path: Path) -> None:
    (genplugin / "echo_words.yaml").write_text(TASK % 12)
    common = ["run", "-p", "harness_genplugin", "--quiet", "--model", "parrot:a", "--task",
              str(genplugin / "echo_words.yaml"), "--batch-size", "2"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                           "-m", "harness", *common, "--cache-dir", str(tmp_path / "c2"), "--output-dir",
                           str(tmp_path / "two")], env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [two] = [Path(line) for line in proc.stdout.split()]  # rank 0 alone writes
    prompts = [p for batch in calls(tmp_path) for p in batch]
    assert len(prompts) == len(set(prompts)) == 12  # the ranks split the requests; none computed twice
    assert main([*common, "--cache-dir", str(tmp_path / "c1"), "--output-dir", str(tmp_path / "one")]) == 0
    one = next((tmp_path / "one").rglob("echo_words-*.json"))
    assert read_result(two)["metrics"] == read_result(one)["metrics"]
    assert read_result(two)["execution"]["world_size"] == 2
    assert two.with_name(two.name.replace(".json", ".samples.jsonl")).read_text() == \
        one.with_name(one.name.replace(".json", ".samples.jsonl")).read_text()


def test_choose_ranks_choices_by_summed_and_per_token_loglikelihood() -> None:
    from harness import Loglikelihood
    from harness.testing import task_context

    class Scorer:
        """log p: -1 per token, except 'a b c d' (-2 in all, the best per token, not in sum)."""

        def loglikelihood(self, requests):  # noqa: ANN001, ANN202
            return [Loglikelihood(-2.0 if r.continuation == "a b c d" else -float(len(r.continuation.split())),
                                  len(r.continuation.split()), False) for r in requests]

    model = tiny_model({"image_embed"})
    model.loglikelihood = Scorer().loglikelihood
    ctx = task_context({"x": [1]}, {}, model=model)
    assert ctx.choose("Q:", ["z", "a b c d", "x y"]) == (0, 1)  # raw sum: "z" (-1); per token: "a b c d" (-0.5)


def test_the_response_set_reads_only_what_was_appended(tmp_path: Path) -> None:
    from harness.responsestore import ResponseStore

    rset = ResponseStore(tmp_path).open({"model": "m"})
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    rset.write([(a, {"text": "1"})])
    assert rset.read([a, b]) == {a: {"text": "1"}}
    offset = rset._offset
    with open(rset.file, "ab") as handle:  # a writer killed mid-line, then another writer's line
        handle.write(b'{"key": "' + b.encode() + b'", "resp')
    assert rset.read([a, b]) == {a: {"text": "1"}} and rset._offset == offset  # the partial line waits
    rset.write([(c, {"text": "3"})])
    assert rset.read([a, b, c]) == {a: {"text": "1"}, c: {"text": "3"}}
    replaced = tmp_path / "other.jsonl"  # the file replaced by another: read from the start again
    replaced.write_text(json.dumps({"key": b, "response": {"text": "2"}}) + "\n")
    os.replace(replaced, rset.file)
    assert rset.read([a, b, c]) == {b: {"text": "2"}}
