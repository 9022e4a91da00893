"""The ``harness`` command line: run, train, list, plugins, validate, cache, leaderboard."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import HarnessError, ResultError, SpecError, UsageError

if TYPE_CHECKING:
    from .registry import Registries

LISTABLE = ("models", "tasks", "kinds", "metrics", "writers", "datasets", "trainers")


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 4) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def bounded_int(low: int, high: int | None = None) -> Any:
    """An argparse type: an integer in ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


positive_int = bounded_int(1)


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def plugin_flags(argv: Sequence[str]) -> list[str]:
    """The ``-p`` values in ``argv``, read before parsing (plugins may add subcommands)."""
    flags = []
    for i, arg in enumerate(argv):
        if arg == "-p" and i + 1 < len(argv):
            flags.append(argv[i + 1])
        elif arg.startswith("-p") and len(arg) > 2:
            flags.append(arg[2:])
    return flags


def _execution_options() -> argparse.ArgumentParser:
    """The options of ``harness run`` and ``harness train`` that make an :class:`ExecutionConfig`."""
    execution = argparse.ArgumentParser(add_help=False)
    execution.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    execution.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                           help="forward-pass precision (torch.autocast; weights stay float32)")
    execution.add_argument("--batch-size", type=_batch_size, default=32,
                           help="N, or auto: the largest that fits on CUDA (remembered per model/resolution/dtype/device)")
    execution.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0)
    execution.add_argument("--quiet", action="store_true", help="no progress bars")
    execution.add_argument("--no-cache", dest="cache", action="store_false",
                           help="neither read nor write the feature store (no resume either)")
    execution.add_argument("--cache-dir", type=Path, default=None,
                           help="cache root for everything harness caches (default $HARNESS_CACHE_DIR or ~/.cache/harness)")
    execution.add_argument("--num-workers", type=bounded_int(0), default=None,
                           help="image-decoding worker processes (default: 0 below 256 images or on a CPU run with <= 2 cores, "
                                "else about one per CPU)")
    execution.add_argument("--shard-size", type=positive_int, default=1024,
                           help="samples per feature-store shard: the most a killed run recomputes (default 1024)")
    execution.add_argument("--check-determinism", action="store_true",
                           help="also embed every batch in halves and record the largest per-sample difference")
    return execution


def execution_config(args: argparse.Namespace) -> Any:
    """The :class:`ExecutionConfig` of parsed ``run``/``train`` options."""
    from .execution import ExecutionConfig

    return ExecutionConfig(device=args.device, dtype=args.dtype, batch_size=args.batch_size, seed=args.seed,
                           progress=not args.quiet and sys.stderr.isatty(), cache=args.cache,
                           cache_dir=args.cache_dir.expanduser() if args.cache_dir else None,
                           num_workers=args.num_workers, shard_size=args.shard_size,
                           check_determinism=args.check_determinism)


def build_parser(pm=None, registries=None) -> argparse.ArgumentParser:  # noqa: ANN001 - imported lazily
    """The parser; with a plugin manager, plugins add their own subcommands; with registries, every
    registered trainer gets ``harness train NAME``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-p", dest="plugin_flags", action="append", default=[], metavar="NAME",
                        help="load plugin NAME (entry-point name or module); -p no:NAME blocks it")
    execution = _execution_options()
    parser = _Parser(prog="harness", description="Evaluate vision and vision-language representations.",
                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", parents=[common, execution], help="evaluate models on tasks")
    run.add_argument("--model", dest="models", action="append", required=True,
                     help="model name, e.g. openclip:ViT-B-32/laion2b_s34b_b79k (repeatable: one result per model "
                          "and task; every name is checked before any model loads)")
    run.add_argument("--task", dest="tasks", action="append", required=True,
                     help="task name or path to a task YAML (repeatable)")
    run.add_argument("--limit", type=positive_int, default=None, help="evaluate a seeded subset of N samples")
    run.add_argument("--output-dir", type=Path, default=Path("results"))
    run.add_argument("--writer", dest="writers", action="append", default=None, help="result writer (default: json)")

    train = sub.add_parser("train", parents=[common], help="train a head on frozen features (harness train NAME)")
    train.set_defaults(handler=cmd_train_missing)
    trainers = train.add_subparsers(dest="trainer", metavar="TRAINER", parser_class=_Parser)
    for name, entry in registries.trainers.items() if registries is not None else ():
        one = trainers.add_parser(name, parents=[common, execution], help=entry.item.description)
        one.add_argument("-o", "--output", type=Path, required=True, help="checkpoint folder to write")
        one.add_argument("--config", type=Path, default=None, help="YAML/JSON file of config values")
        one.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="set one config value (YAML-typed; repeatable)")
        from .training import add_trainer_options

        add_trainer_options(one, entry.item)
        one.set_defaults(handler=cmd_train, trainer_spec=entry.item)

    lst = sub.add_parser("list", parents=[common], help="list what the loaded plugins provide")
    lst.add_argument("what", choices=LISTABLE)
    sub.add_parser("plugins", parents=[common], help="list loaded plugins with distribution and version")
    val = sub.add_parser("validate", parents=[common], help="validate task specs (.yaml) and result files (.json)")
    val.add_argument("paths", nargs="*", type=Path, help="files or folders")
    val.add_argument("--all", action="store_true", help="every task spec the plugins register")
    cache = sub.add_parser("cache", parents=[common], help="inspect or clear the feature store")
    cache.add_argument("action", choices=["ls", "du", "rm", "verify"])
    cache.add_argument("ids", nargs="*", help="feature-set ids or unique prefixes (rm, verify)")
    cache.add_argument("--all", action="store_true", help="rm: every feature set")
    cache.add_argument("--cache-dir", type=Path, default=None, help="cache root (default $HARNESS_CACHE_DIR or ~/.cache/harness)")
    again = sub.add_parser("rescore", parents=[common],
                           help="recompute a result's metrics from its per-sample records (no model)")
    again.add_argument("results", nargs="+", type=Path, help="result files (.json) with records")
    again.add_argument("--output-dir", type=Path, required=True, help="where the new results go")
    again.add_argument("--metric", dest="metrics", action="append", default=[],
                       help="metric to compute (repeatable; default: the result's own)")
    again.add_argument("--main", default=None, help="main score (default: the result's, else the first --metric)")
    board = sub.add_parser("leaderboard", parents=[common], help="render result files as markdown")
    board.add_argument("results_dir", type=Path)
    board.add_argument("-o", "--output", type=Path, required=True, help="markdown file to write")
    if pm is not None:
        pm.notify("harness_add_commands", subparsers=sub, parents=[common])
    return parser


def cmd_run(args: argparse.Namespace, registries: Registries) -> int:
    from .runner import RunConfig, run_models

    if len(set(args.models)) < len(args.models):
        raise UsageError(f"run: --model given twice: {sorted({m for m in args.models if args.models.count(m) > 1})}")
    config = RunConfig(model=args.models[0], tasks=tuple(args.tasks), execution=execution_config(args),
                       limit=args.limit, output_dir=args.output_dir.expanduser(), writers=tuple(args.writers or ("json",)))
    for path in run_models([replace(config, model=model) for model in args.models], registries):
        print(path)
    return 0


def cmd_train_missing(args: argparse.Namespace, registries: Registries) -> int:
    names = ", ".join(registries.trainers) or "none registered"
    raise UsageError(f"harness train: name a trainer ({names}), e.g. `harness train NAME --help`")


def cmd_train(args: argparse.Namespace, registries: Registries) -> int:
    from .training import train, trainer_config

    spec = args.trainer_spec
    out = train(spec, trainer_config(args, spec), execution_config(args), args.output, registries)
    print(out)
    return 0


def cmd_list(args: argparse.Namespace, registries: Registries) -> int:
    registry = getattr(registries, "task_kinds" if args.what == "kinds" else args.what)
    for name, entry in registry.items():
        description = getattr(entry.item, "description", "") if args.what != "tasks" else str(entry.item)
        if args.what == "tasks":
            from .suite import is_suite_file, load_suite

            if is_suite_file(entry.item):
                suite = load_suite(entry.item)
                description = f"suite of {len(suite.tasks)} tasks (+{len(suite.separate)} separate)\t{entry.item}"
        declared = getattr(entry.item, "capabilities", None) or getattr(entry.item, "needs", None)
        if declared is not None:  # models: what they can do; kinds: what they need
            description = f"{','.join(sorted(declared))}\t{description}"
        print(f"{name}\t[{entry.plugin}]\t{description}".rstrip())
    if args.what == "models":
        print("# other names are resolved by plugins, e.g. openclip:ARCH/TAG, hf:ORG/REPO, a local path")
    return 0


def cmd_plugins(args: argparse.Namespace, registries: Registries) -> int:
    for info in registries.pm.plugins_info():
        dist = f"{info.distribution} {info.version}" if info.distribution else "(not from a distribution)"
        print(f"{info.name}\t{info.module}\t{dist}")
    return 0


def _validate_file(path: Path, registries: Registries) -> None:
    from .records import read_records
    from .result import read_result
    from .taskspec import load_task_spec

    from .suite import is_suite_file, load_suite

    if path.suffix in (".yaml", ".yml") and is_suite_file(path):
        load_suite(path, registries)
    elif path.suffix in (".yaml", ".yml"):
        load_task_spec(path, registries)
    elif path.suffix == ".json":
        read_records(path, read_result(path))
    else:
        raise UsageError(f"{path}: not a task spec (.yaml) or result file (.json)")


def cmd_validate(args: argparse.Namespace, registries: Registries) -> int:
    files: list[Path] = [entry.item for _, entry in registries.tasks.items()] if args.all else []
    for path in args.paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    if not files:
        raise UsageError("validate: nothing to validate (give paths or --all)")
    failures = 0
    for path in files:
        try:
            _validate_file(path, registries)
            print(f"ok\t{path}")
        except (SpecError, ResultError) as exc:
            failures += 1
            print(f"FAIL\t{exc}", file=sys.stderr)
    return SpecError.exit_code if failures else 0


def cmd_leaderboard(args: argparse.Namespace, registries: Registries) -> int:
    from .atomicfile import write_text_atomic
    from .leaderboard import check_output, collect, render
    from .suite import registered_suites

    check_output(args.output)  # before reading anything: a folder, results, or a file this did not generate
    text = render(collect(args.results_dir), suites=registered_suites(registries))
    write_text_atomic(args.output, text)
    print(args.output)
    return 0


def cmd_rescore(args: argparse.Namespace, registries: Registries) -> int:
    from .rescore import rescore
    from .resultfile import check_output_dir

    output_dir = check_output_dir(args.output_dir)
    for name in args.metrics:
        registries.metrics.get(name)
    for path in args.results:
        print(rescore(path, registries, output_dir, args.metrics, args.main))
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _describe_set(key: dict) -> str:
    encoder = key.get("encoder", {})
    name = encoder.get("name", "?") if isinstance(encoder, dict) else str(encoder)
    data = key.get("dataset")
    if isinstance(data, dict):
        where = f"{data.get('source')}:{data.get('id')}:{data.get('split')}[{key.get('column')}]"
    else:
        where = key.get("name") or key.get("modality", "?")
    return f"{name}\t{where}\t{key.get('output', '-')}\t{key.get('dtype', '-')}"


def cmd_cache(args: argparse.Namespace, registries: Registries) -> int:
    from .featurestore import FeatureStore

    store = FeatureStore.default(args.cache_dir)
    if args.action in ("ls", "du"):
        summaries = [s.summary() for s in store.sets()]
        if args.action == "ls":
            for s in summaries:
                print(f"{s.id[:12]}\t{s.key.get('modality', '-')}\t{s.samples} samples\t{s.shards} shards\t"
                      f"{_size(s.bytes)}\t{_describe_set(s.key)}")
        else:
            for s in sorted(summaries, key=lambda s: -s.bytes):
                print(f"{_size(s.bytes)}\t{s.id[:12]}")
            print(f"{_size(sum(s.bytes for s in summaries))}\ttotal ({len(summaries)} feature sets in {store.root})")
        return 0
    if args.action == "rm" and not (args.ids or args.all):
        raise UsageError("cache rm: name feature-set ids (see `harness cache ls`) or --all")
    targets = store.sets() if args.all or not args.ids else [store.find(prefix) for prefix in args.ids]
    if args.action == "rm":
        for target in targets:
            store.remove(target)
            print(f"removed\t{target.id[:12]}")
        return 0
    problems = 0
    for target in targets:
        report: list[str] = []
        ok, dropped, orphans = target.verify(report)
        problems += dropped + len(report)
        print(f"{target.id[:12]}\t{ok} shards ok\t{dropped} dropped (recomputed on next use)\t{orphans} orphans removed")
        for line in report:
            print(f"{target.id[:12]}\t{line}", file=sys.stderr)
    return 1 if problems else 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "plugins": cmd_plugins, "validate": cmd_validate,
            "leaderboard": cmd_leaderboard, "cache": cmd_cache, "rescore": cmd_rescore}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``harness`` command on ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    return _main(argv)[0]


def entry() -> None:
    """Entry point of the ``harness`` console script: :func:`main`, then, after a built-in command,
    a quick exit -- streams flushed, ``atexit`` handlers run, then ``os._exit``, skipping the
    interpreter's finalisation of torch, scipy and pyarrow, which takes most of a second (0.8 s of
    a 3.2 s warm run here) and only frees memory the system frees anyway. Everything harness writes
    is closed (and fsynced) before its command returns; a plugin's own command exits normally."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    code, command = _main(None)
    if command not in COMMANDS:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (harness list | head): nothing more to say
            pass
    atexit._run_exitfuncs()
    logging.shutdown()
    os._exit(code)


def _main(argv: Sequence[str] | None) -> tuple[int, str | None]:
    """(exit code, the command that ran, if the arguments named one)."""
    from .pluginmanager import get_plugin_manager
    from .registry import collect

    from .allocator import tune

    tune()  # before torch allocates anything (see harness/allocator.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _one_line_warning
    command = None
    try:
        pm = get_plugin_manager(plugin_flags(argv))
        registries = collect(pm)
        args = build_parser(pm, registries).parse_args(argv)
        command = args.command
        handler = COMMANDS.get(args.command) or args.handler
        return handler(args, registries), command
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code, command
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130, command
    except Exception as exc:  # a bug: still one line (where it happened), unless asked for the traceback
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"harness: internal error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} "
              f"(at {_origin(exc)}; set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1, command


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """Warnings as ``harness: warning: ...`` (one line, no source excerpt)."""
    text = " ".join(str(message).split())
    return f"harness: warning: {text}\n"


#: Set to any non-empty value to get Python's traceback instead of the one-line internal error.
DEBUG_ENV = "HARNESS_DEBUG"


def _origin(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"


if __name__ == "__main__":
    entry()
