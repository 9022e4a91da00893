"""Hostile, shared and damaged caches: a manifest that points outside its set, links, devices,
another user's unreadable files, a read-only cache, the umask, `harness cache rm` on links and a
scenes cache edited on disk. Every case asserts the exit code, the warning or message line, the
scores of a clean run, and that nothing outside the intended files changed.

Permissions are simulated in-process (the kernel lets root read and write everything); the
tests marked *real permissions* run the CLI in a subprocess the kernel restricts: as a normal
user, or as root without the capabilities that bypass file permissions (``setpriv``).
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pytest

from harness.atomicfile import read_regular, write_bytes_atomic
from harness.batchsize import BatchSizeMemo
from harness.cli import main
from harness.featurestore import FeatureSet, FeatureStore
from harness.result import read_result
from harness_scenes import builder

PLUGIN = '''
from harness import hookimpl
from harness.testing import tiny_model_spec


@hookimpl
def harness_register_models():
    return [tiny_model_spec("cachetest:tiny", {"image_embed", "text_embed"}, dim=16)]
'''

TASK = """\
name: cachetest_shapes
version: 1
kind: zeroshot_classification
dataset: {builder: scenes, config: {n: 12, max_objects: 1, seed: 5}, split: test}
columns: {image: image, label: shape}
params: {templates: ["a {c}.", "a drawing of a {c}."]}
metrics: [accuracy, mean_per_class_recall]
main_score: accuracy
"""

ARROW = "data-00000-of-00001.arrow"
UNPRIVILEGED = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


# -- fixtures and helpers -------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The test plugin and task, a clean run's metrics and its populated cache (copied per test)."""
    root = tmp_path_factory.mktemp("hostile-cache")
    (root / "plugin").mkdir()
    (root / "plugin" / "harness_cachetest.py").write_text(PLUGIN)
    (root / "cachetest_shapes.yaml").write_text(TASK)
    sys.path.insert(0, str(root / "plugin"))
    builder._MEMORY.clear()
    found = {"root": root, "task": root / "cachetest_shapes.yaml", "pristine": root / "pristine"}
    code, doc = cli(found, found["pristine"], root / "clean-results")
    assert code == 0
    found["metrics"] = doc["metrics"]
    yield found
    sys.path.remove(str(root / "plugin"))


def run_argv(env: dict, cache: Path, out: Path) -> list[str]:
    return ["run", "--quiet", "-p", "harness_cachetest", "--model", "cachetest:tiny", "--task", str(env["task"]),
            "--cache-dir", str(cache), "--output-dir", str(out), "--shard-size", "4"]


def cli(env: dict, cache: Path, out: Path) -> tuple[int, dict | None]:
    """``harness run`` in this process (the scenes split re-read from disk): exit code and result."""
    builder._MEMORY.clear()
    code = main(run_argv(env, cache, out))
    results = list(out.rglob("*.json")) if out.exists() else []
    return code, (read_result(results[0]) if code == 0 and results else None)


@pytest.fixture()
def cache(env: dict, tmp_path: Path) -> Path:
    """A copy of the clean run's cache (features and scenes)."""
    shutil.copytree(env["pristine"], tmp_path / "cache", symlinks=True)
    return tmp_path / "cache"


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A folder outside the cache holding a file nobody may delete or change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_bytes(b"precious, not a shard\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "keep.txt").write_bytes(b"also precious\n")
    return folder


def snapshot(*roots: Path) -> dict[str, Any]:
    """Every path under ``roots`` (links not followed): kind, mode and content or link target."""
    seen: dict[str, Any] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                path = Path(folder) / name
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    seen[str(path)] = ("link", os.readlink(path))
                elif stat.S_ISREG(info.st_mode):
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    seen[str(path)] = ("file", stat.S_IMODE(info.st_mode), digest)
                else:
                    seen[str(path)] = ("dir", stat.S_IMODE(info.st_mode))
    return seen


def image_set(cache: Path) -> FeatureSet:
    [found] = [s for s in FeatureStore.default(cache).sets() if s.key.get("modality") == "image"]
    return found


def scenes_folder(cache: Path) -> Path:
    [folder] = [p for p in (cache / "scenes").iterdir() if not p.name.startswith(".")]
    return folder


def store_warnings(recorded: Iterable[Any], prefix: str = "feature store:") -> list[str]:
    return [str(w.message) for w in recorded if str(w.message).startswith(prefix)]


def rewrite_first_entry(fset: FeatureSet, **changes: Any) -> dict:
    """Change the first manifest line of ``fset``; return the original entry."""
    lines = fset.manifest.read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, **changes}, sort_keys=True)
    fset.manifest.write_text("\n".join(lines) + "\n")
    return first


class Deny:
    """What the kernel would refuse this process, for tests that run as root (whom it refuses
    nothing): writes of any kind under :meth:`writes` roots, and reads under :meth:`reads` roots.
    C code that opens files itself (pyarrow) is not covered: the tests deny only paths it never writes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.write_roots: list[Path] = []
        self.read_roots: list[Path] = []
        self.refused: list[str] = []
        real = {name: getattr(os, name) for name in ("open", "mkdir", "rename", "replace", "unlink", "remove",
                                                     "rmdir", "chmod", "listdir", "scandir")}
        real_open = builtins.open

        def where(path: Any, dir_fd: int | None = None) -> Path:
            path = os.fspath(path)
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if dir_fd is not None and not os.path.isabs(path):
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            return Path(os.path.abspath(path))

        def check(path: Any, write: bool, dir_fd: int | None = None) -> None:
            if isinstance(path, int):
                return
            place = where(path, dir_fd)
            for root in self.write_roots if write else self.read_roots:
                if place == root or root in place.parents:
                    self.refused.append(str(place))
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(place))

        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def fake_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
            check(path, bool(flags & writing), dir_fd)
            check(path, False, dir_fd)
            return real["open"](path, flags, mode, dir_fd=dir_fd)

        def fake_builtin_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, bytes, os.PathLike)):
                check(file, any(c in mode for c in "wax+"))
                check(file, False)
            return real_open(file, mode, *args, **kwargs)

        def writer(name: str, paths: int = 1) -> Any:
            def fake(*args: Any, **kwargs: Any) -> Any:
                for path in args[:paths]:
                    check(path, True, kwargs.get("dir_fd") or kwargs.get("src_dir_fd"))
                return real[name](*args, **kwargs)
            return fake

        def fake_mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
            if not os.path.lexists(where(path, dir_fd)):
                check(path, True, dir_fd)
            return real["mkdir"](path, mode, dir_fd=dir_fd)

        def reader(name: str) -> Any:
            def fake(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
                check(path, False)
                return real[name](path, *args, **kwargs)
            return fake

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(builtins, "open", fake_builtin_open)
        monkeypatch.setattr(io, "open", fake_builtin_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        for name in ("rename", "replace"):
            monkeypatch.setattr(os, name, writer(name, paths=2))
        for name in ("unlink", "remove", "rmdir", "chmod"):
            monkeypatch.setattr(os, name, writer(name))
        for name in ("listdir", "scandir"):
            monkeypatch.setattr(os, name, reader(name))

    def writes(self, root: Path) -> Deny:
        self.write_roots.append(Path(os.path.abspath(root)))
        return self

    def reads(self, root: Path) -> Deny:
        self.read_roots.append(Path(os.path.abspath(root)))
        return self

    def off(self) -> None:
        """Permit everything again (to inspect what the run left)."""
        self.write_roots.clear()
        self.read_roots.clear()


@pytest.fixture()
def deny(monkeypatch: pytest.MonkeyPatch) -> Deny:
    return Deny(monkeypatch)


def restricted_cli(env: dict, cache: Path, out: Path) -> subprocess.CompletedProcess:
    """``harness run`` in a subprocess the kernel restricts by file permissions (skip where it cannot)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file permissions cannot be enforced")
        prefix = UNPRIVILEGED
        probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode()[-200:]}")
    pythonpath = os.pathsep.join([str(env["root"] / "plugin"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([*prefix, sys.executable, "-m", "harness", *run_argv(env, cache, out)],
                          env={**os.environ, "PYTHONPATH": pythonpath}, capture_output=True, text=True, timeout=300)


def chmod_tree(root: Path, file_mode: int, dir_mode: int) -> None:
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files:
            if not os.path.islink(Path(folder) / name):
                os.chmod(Path(folder) / name, file_mode)
        for name in dirs:
            os.chmod(Path(folder) / name, dir_mode)
    os.chmod(root, dir_mode)


# -- 1. the manifest is not trusted -----------------------------------------------------------
HOSTILE = ["absolute", "dotdot", "dev_zero", "symlink", "symlink_dev_zero"]


def plant(case: str, fset: FeatureSet, outside: Path) -> tuple[dict, str]:
    """Point the first manifest entry of ``fset`` at something outside the set; return the
    original entry and the text the warning must contain."""
    victim = outside / "victim.txt"
    if case in ("symlink", "symlink_dev_zero"):
        first = fset.entries()[0]
        shard = fset.path / first["file"]
        shard.unlink()
        shard.symlink_to(victim if case == "symlink" else "/dev/zero")
        return first, f"shard {first['file'][:16]} of set {fset.id[:12]} is a symbolic link"
    target = {"absolute": str(victim), "dotdot": "../../../outside/victim.txt", "dev_zero": "/dev/zero"}[case]
    assert (fset.path / target).resolve() == (victim if case != "dev_zero" else Path("/dev/zero"))
    first = rewrite_first_entry(fset, file=target)
    return first, f"manifest entry {target!r} of set {fset.id[:12]} is ignored: its file is not a shard name"


@pytest.mark.parametrize("case", HOSTILE)
def test_a_run_ignores_manifest_entries_that_point_outside_the_set(env: dict, cache: Path, outside: Path,
                                                                     tmp_path: Path, case: str,
                                                                     recwarn: pytest.WarningsRecorder) -> None:
    fset = image_set(cache)
    first, message = plant(case, fset, outside)
    before = snapshot(outside)
    code, doc = cli(env, cache, tmp_path / "out")
    assert code == 0 and doc["metrics"] == env["metrics"]
    assert doc["cache"]["image_hits"] == 8 and doc["cache"]["image_misses"] == 4  # only that shard recomputed
    warned = store_warnings(recwarn)
    assert warned and all(message in w for w in warned), warned
    assert snapshot(outside) == before and (outside / "victim.txt").read_bytes() == b"precious, not a shard\n"
    shard = fset.path / first["file"]
    assert stat.S_ISREG(os.lstat(shard).st_mode)  # recomputed bit-identically; a link there was replaced, not followed
    assert hashlib.sha256(shard.read_bytes()).hexdigest() == first["sha256"]
    recwarn.clear()
    code, doc = cli(env, cache, tmp_path / "again")
    assert code == 0 and doc["cache"]["image_misses"] == 0 and doc["metrics"] == env["metrics"]


@pytest.mark.parametrize("case", HOSTILE)
def test_cache_verify_ignores_manifest_entries_that_point_outside_the_set(cache: Path, outside: Path, case: str,
                                                                            capsys: pytest.CaptureFixture) -> None:
    fset = image_set(cache)
    first, message = plant(case, fset, outside)
    before = snapshot(outside)
    others = {p.name: p.read_bytes() for p in fset.path.glob("*.safetensors") if p.name != first["file"]}
    capsys.readouterr()
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 1
    out, err = capsys.readouterr()
    assert f"{fset.id[:12]}\t2 shards ok\t1 dropped (recomputed on next use)\t0 orphans removed" in out.splitlines()
    assert any(line.startswith(f"{fset.id[:12]}\t") and message in line for line in err.splitlines()), err
    assert snapshot(outside) == before
    assert {p.name: p.read_bytes() for p in fset.path.glob("*.safetensors") if p.name != first["file"]} == others
    assert len(fset.entries()) == 2 and "victim" not in fset.manifest.read_text()  # the bad line is gone
    if case.startswith("symlink"):
        link = fset.path / first["file"]
        assert link.is_symlink()  # young: left for a writer that may be at work
        old = time.time() - 2 * 3600
        os.utime(link, (old, old), follow_symlinks=False)
        assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0
        assert "\t1 orphans removed" in capsys.readouterr().out
        assert not os.path.lexists(link) and snapshot(outside) == before
    else:
        assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0


def test_key_json_and_manifest_that_are_links_or_devices(cache: Path, outside: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture,
                                                         recwarn: pytest.WarningsRecorder) -> None:
    fset = image_set(cache)
    (fset.path / "key.json").unlink()
    (fset.path / "key.json").symlink_to("/dev/zero")  # FeatureSet.at must not read it
    with pytest.raises(OSError, match="symbolic link"):
        FeatureSet.at(fset.path)
    fake = cache / "features" / ("f" * 32)
    fake.symlink_to(outside, target_is_directory=True)  # a set-named link to an outside folder
    (outside / "key.json").write_text(json.dumps({"modality": "image"}))
    before = snapshot(outside)
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert fset.id[:12] not in listing and "ffffffffffff" not in listing and "\ttext\t" in listing
    assert main(["cache", "rm", "--all", "--cache-dir", str(cache)]) == 0
    assert snapshot(outside) == before and fake.is_symlink()
    # a manifest that is a link to a file outside: read as empty, replaced (never appended through) by a writer
    victim = outside / "victim.txt"
    other = FeatureStore.default(cache).open({"name": "linked"})
    other.path.mkdir(parents=True)
    other.manifest.symlink_to(victim)
    assert not other.read(["a"])[0].any()
    assert other.write(["a"], np.ones((1, 3)))
    assert snapshot(outside) == before and not other.manifest.is_symlink()
    assert other.read(["a"])[0].all()
    assert any("ignoring the manifest" in w for w in store_warnings(recwarn))


def test_an_oversized_shard_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        recwarn: pytest.WarningsRecorder) -> None:
    fset = FeatureStore(tmp_path / "features").open({"name": "big"})
    fset.write(["a", "b"], np.ones((2, 3)))
    [entry] = fset.entries()
    shard = fset.path / entry["file"]
    with open(shard, "ab") as handle:
        handle.truncate(shard.stat().st_size + (1 << 20))  # sparse: 1 MiB more than its shape allows
    reads: list[int] = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real(fd, n))
    found, _ = fset.read(["a", "b"])
    assert not found.any() and not reads  # refused on its size, before reading a byte
    assert store_warnings(recwarn) == [f"feature store: shard {entry['file'][:16]} of set {fset.id[:12]} is larger "
                                       "than its manifest entry allows; dropping it (its samples are recomputed)"]
    assert not shard.exists() and fset.entries() == []


# -- 2. a cache shared by users ----------------------------------------------------------------
def test_another_users_unreadable_shard_is_kept_and_recomputed(env: dict, cache: Path, tmp_path: Path, deny: Deny,
                                                               recwarn: pytest.WarningsRecorder) -> None:
    fset = image_set(cache)
    first = fset.entries()[0]
    before = snapshot(cache / "features")
    deny.reads(fset.path / first["file"])  # as if chmod 000 by its owner
    code, doc = cli(env, cache, tmp_path / "out")
    deny.off()
    assert code == 0 and doc["metrics"] == env["metrics"]
    assert doc["cache"]["image_misses"] == 4
    assert store_warnings(recwarn) == [
        f"feature store: shard {first['file'][:16]} of set {fset.id[:12]} is unreadable (Permission denied: "
        "another user may own it); its samples are recomputed, the shard is left in place"]
    assert snapshot(cache / "features") == before  # not deleted, not rewritten, manifest untouched


def test_another_users_files_with_real_permissions(env: dict, cache: Path, tmp_path: Path) -> None:
    """Real permissions: a shard and the scenes cache folder no one but their owner may read."""
    fset = image_set(cache)
    shard = fset.path / fset.entries()[0]["file"]
    scenes = scenes_folder(cache)
    os.chmod(shard, 0)
    os.chmod(scenes, 0)
    try:
        before = snapshot(cache / "features")
        done = restricted_cli(env, cache, tmp_path / "out")
        after = snapshot(cache / "features")
    finally:
        os.chmod(scenes, 0o755)
        os.chmod(shard, 0o644)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("harness: warning:")]
    assert len(warned) == 2, done.stderr
    assert "is unreadable (Permission denied: another user may own it)" in warned[0] + warned[1]
    assert f"scenes: cannot read cache {scenes} (Permission denied" in warned[0] + warned[1]
    assert after == before and shard.exists()
    assert read_result(Path(done.stdout.strip().splitlines()[-1]))["metrics"] == env["metrics"]


@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_created_files_and_folders_follow_the_umask(env: dict, tmp_path: Path, umask: int) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    previous = os.umask(umask)
    try:
        code, _ = cli(env, cache, out)
        BatchSizeMemo(cache_dir=cache).put("key", 8)
        write_bytes_atomic(cache / "plain.bin", b"x")
    finally:
        os.umask(previous)
    assert code == 0
    files, folders = 0o666 & ~umask, 0o777 & ~umask
    seen = snapshot(cache, out)
    kinds = {"file": files, "dir": folders}
    wrong = {path: (kind, oct(mode)) for path, (kind, mode, *_) in seen.items() if mode != kinds[kind]}
    assert not wrong
    names = {Path(p).name for p in seen}
    assert {"manifest.jsonl", "key.json", ".lock", "batchsize.json", "batchsize.json.lock", "harness-integrity.json",
            ARROW, "state.json"} <= names
    assert any(n.endswith(".safetensors") for n in names)
    assert any(n.endswith(".json") for n in os.listdir(next(out.iterdir())))  # the result, checked above
    assert seen[str(scenes_folder(cache))] == ("dir", folders)  # was mkdtemp's 0700


def test_a_read_only_cache_with_a_corrupt_shard(env: dict, cache: Path, tmp_path: Path, deny: Deny,
                                                recwarn: pytest.WarningsRecorder) -> None:
    fset = image_set(cache)
    first = fset.entries()[0]
    shard = fset.path / first["file"]
    blob = bytearray(shard.read_bytes())
    blob[-3] ^= 0xFF
    shard.write_bytes(bytes(blob))
    before = snapshot(cache)
    deny.writes(cache)
    code, doc = cli(env, cache, tmp_path / "out")
    deny.off()
    assert code == 0 and doc["metrics"] == env["metrics"]
    assert store_warnings(recwarn) == [
        f"feature store: shard {first['file'][:16]} of set {fset.id[:12]} is corrupt (sha256 mismatch); "
        f"its samples are recomputed but not cached, and the shard stays: cannot change {fset.path} "
        "(Permission denied)"]
    assert snapshot(cache) == before and deny.refused


def test_a_read_only_cache_with_a_corrupt_shard_with_real_permissions(env: dict, cache: Path, tmp_path: Path) -> None:
    fset = image_set(cache)
    shard = fset.path / fset.entries()[0]["file"]
    blob = bytearray(shard.read_bytes())
    blob[-3] ^= 0xFF
    shard.write_bytes(bytes(blob))
    chmod_tree(cache, 0o444, 0o555)
    try:
        before = snapshot(cache)
        done = restricted_cli(env, cache, tmp_path / "out")
        after = snapshot(cache)
    finally:
        chmod_tree(cache, 0o644, 0o755)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("harness: warning:")]
    assert len(warned) == 1 and ("is corrupt (sha256 mismatch); its samples are recomputed but not cached, and the "
                                 f"shard stays: cannot change {fset.path} (Permission denied)") in warned[0], done.stderr
    assert after == before
    assert read_result(Path(done.stdout.strip().splitlines()[-1]))["metrics"] == env["metrics"]


def test_a_cache_that_cannot_be_written_still_runs(env: dict, tmp_path: Path, deny: Deny,
                                                   recwarn: pytest.WarningsRecorder) -> None:
    cache = tmp_path / "cache"
    (cache / "features").mkdir(parents=True)
    deny.writes(cache / "features")
    code, doc = cli(env, cache, tmp_path / "out")
    deny.off()
    assert code == 0 and doc["metrics"] == env["metrics"]
    [warned] = store_warnings(recwarn)  # one for the image and the text set together
    assert warned.startswith(f"feature store: cannot write to {cache / 'features'}") and \
        warned.endswith("(Permission denied); features are computed but not cached")
    assert list((cache / "features").iterdir()) == []


def test_cache_rm_removes_links_never_their_targets(tmp_path: Path, outside: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    store = FeatureStore.default(tmp_path / "cache")
    fset = store.open({"name": "linked"})
    fset.write(["a"], np.ones((1, 2)))
    (fset.path / "to-file").symlink_to(outside / "victim.txt")
    (fset.path / "to-folder").symlink_to(outside, target_is_directory=True)
    (fset.path / "dangling").symlink_to(tmp_path / "nothing")
    (fset.path / "sub").mkdir()
    (fset.path / "sub" / "deep").symlink_to(outside / "sub", target_is_directory=True)
    keep = store.open({"name": "kept"})
    keep.write(["b"], np.ones((1, 2)))
    before = snapshot(outside)
    assert main(["cache", "rm", fset.id[:8], "--cache-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out == f"removed\t{fset.id[:12]}\n"
    assert not os.path.lexists(fset.path) and snapshot(outside) == before
    assert [s.id for s in store.sets()] == [keep.id]
    (keep.path / "to-file").symlink_to(outside / "victim.txt")
    assert main(["cache", "rm", "--all", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert not store.sets() and snapshot(outside) == before


# -- 3. the scenes cache is checked ------------------------------------------------------------
def flipped_arrow(folder: Path, work: Path) -> Path:
    """The split's arrow file with every ``shape`` label changed, written under ``work``."""
    import datasets

    data = datasets.load_from_disk(str(folder), keep_in_memory=True)
    count = data.features["shape"].num_classes
    flipped = data.map(lambda row: {"shape": (row["shape"] + 1) % count}, keep_in_memory=True)
    flipped.save_to_disk(str(work))
    return work / ARROW


@pytest.mark.parametrize("case", ["labels", "link", "added", "removed"])
def test_a_scenes_cache_edited_on_disk_is_rebuilt(env: dict, cache: Path, tmp_path: Path, outside: Path, case: str,
                                                  recwarn: pytest.WarningsRecorder) -> None:
    import datasets

    folder = scenes_folder(cache)
    pristine = hashlib.sha256((folder / ARROW).read_bytes()).hexdigest()
    edited = flipped_arrow(folder, outside / "flipped")
    if case == "labels":
        shutil.copyfile(edited, folder / ARROW)
        reason = f"{ARROW} differs from its recorded sha256 (edited on disk?)"
    elif case == "link":
        (folder / ARROW).unlink()
        (folder / ARROW).symlink_to(edited)
        reason = f"{ARROW} is a symbolic link"
    elif case == "added":
        (folder / "cache-0000.arrow").write_bytes(b"extra")
        reason = "cache-0000.arrow was added"
    else:
        (folder / "dataset_info.json").unlink()
        reason = "dataset_info.json is missing"
    if case in ("labels", "link"):  # the edit would change the scores if it were used
        tampered = datasets.load_from_disk(str(folder), keep_in_memory=True)["shape"]
        assert tampered != datasets.load_from_disk(str(env["pristine"] / "scenes" / folder.name),
                                                   keep_in_memory=True)["shape"]
    before = snapshot(outside)
    code, doc = cli(env, cache, tmp_path / "out")
    assert code == 0 and doc["metrics"] == env["metrics"]
    assert [str(w.message) for w in recwarn if str(w.message).startswith("scenes:")] == [
        f"scenes: rebuilding unreadable cache {folder}: {reason}"]
    assert not store_warnings(recwarn)
    assert stat.S_ISREG(os.lstat(folder / ARROW).st_mode)
    assert hashlib.sha256((folder / ARROW).read_bytes()).hexdigest() == pristine
    assert sorted(p.name for p in (cache / "scenes").iterdir()) == [folder.name]  # no temporary or stale folders
    assert snapshot(outside) == before
    recwarn.clear()
    code, doc = cli(env, cache, tmp_path / "again")
    assert code == 0 and not [w for w in recwarn if str(w.message).startswith("scenes:")]


def test_a_scenes_cache_without_an_integrity_record_is_rebuilt(env: dict, cache: Path, tmp_path: Path,
                                                               recwarn: pytest.WarningsRecorder) -> None:
    folder = scenes_folder(cache)
    (folder / builder.INTEGRITY).unlink()  # as written by an older version
    code, doc = cli(env, cache, tmp_path / "out")
    assert code == 0 and doc["metrics"] == env["metrics"]
    assert [str(w.message) for w in recwarn if str(w.message).startswith("scenes:")] == [
        f"scenes: rebuilding unreadable cache {folder}: no {builder.INTEGRITY} (written by an older version, "
        "or interrupted)"]
    assert json.loads(read_regular(folder / builder.INTEGRITY, 1 << 20))["fingerprint"] == folder.name


def test_another_users_scenes_cache_is_left_alone(env: dict, cache: Path, tmp_path: Path, deny: Deny,
                                                  recwarn: pytest.WarningsRecorder) -> None:
    folder = scenes_folder(cache)
    before = snapshot(cache / "scenes")
    deny.reads(folder)
    code, doc = cli(env, cache, tmp_path / "out")
    deny.off()
    assert code == 0 and doc["metrics"] == env["metrics"]
    assert [str(w.message) for w in recwarn if str(w.message).startswith("scenes:")] == [
        f"scenes: cannot read cache {folder} (Permission denied; another user's?): using the split built in "
        "memory, the cache is left as it is"]
    assert snapshot(cache / "scenes") == before
