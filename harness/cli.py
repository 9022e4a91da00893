"""The ``harness`` command line: run, list, plugins, validate, leaderboard."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import HarnessError, ResultError, SpecError, UsageError

if TYPE_CHECKING:
    from .registry import Registries

LISTABLE = ("encoders", "tokenizers", "tasks", "kinds", "metrics", "writers", "datasets")


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 4) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def plugin_flags(argv: Sequence[str]) -> list[str]:
    """The ``-p`` values in ``argv``, read before parsing (plugins may add subcommands)."""
    flags = []
    for i, arg in enumerate(argv):
        if arg == "-p" and i + 1 < len(argv):
            flags.append(argv[i + 1])
        elif arg.startswith("-p") and len(arg) > 2:
            flags.append(arg[2:])
    return flags


def build_parser(pm=None) -> argparse.ArgumentParser:  # noqa: ANN001 - PluginManager, imported lazily
    """The parser; with a plugin manager, plugins add their own subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-p", dest="plugin_flags", action="append", default=[], metavar="NAME",
                        help="load plugin NAME (entry-point name or module); -p no:NAME blocks it")
    parser = _Parser(prog="harness", description="Evaluate vision and vision-language representations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", parents=[common], help="evaluate a model on tasks")
    run.add_argument("--model", dest="models", action="append", required=True,
                     help="encoder name, e.g. openclip:ViT-B-32/laion2b_s34b_b79k (repeatable: one result per model "
                          "and task; every name is checked before any model loads)")
    run.add_argument("--task", dest="tasks", action="append", required=True,
                     help="task name or path to a task YAML (repeatable)")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    run.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    run.add_argument("--batch-size", type=_batch_size, default=32,
                     help="N, or auto: the largest that fits on CUDA (remembered per model/resolution/dtype/device)")
    run.add_argument("--limit", type=_positive_int, default=None, help="evaluate a seeded subset of N samples")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--output-dir", type=Path, default=Path("results"))
    run.add_argument("--writer", dest="writers", action="append", default=None, help="result writer (default: json)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--no-cache", dest="cache", action="store_false",
                     help="neither read nor write the feature store (no resume either)")
    run.add_argument("--cache-dir", type=Path, default=None,
                     help="cache root (features in DIR/features; default $HARNESS_CACHE_DIR or ~/.cache/harness)")
    run.add_argument("--num-workers", type=_non_negative_int, default=None,
                     help="image-decoding worker processes (default: 0 below 256 images, else about one per CPU)")
    run.add_argument("--shard-size", type=_positive_int, default=1024,
                     help="samples per feature-store shard: the most a killed run recomputes (default 1024)")
    run.add_argument("--check-determinism", action="store_true",
                     help="also embed every batch in halves and record the largest per-sample difference")

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
    board = sub.add_parser("leaderboard", parents=[common], help="render result files as markdown")
    board.add_argument("results_dir", type=Path)
    board.add_argument("-o", "--output", type=Path, required=True, help="markdown file to write")
    if pm is not None:
        pm.hook.harness_add_commands(subparsers=sub, parents=[common])
    return parser


def cmd_run(args: argparse.Namespace, registries: Registries) -> int:
    from .runner import RunConfig, run_models

    if len(set(args.models)) < len(args.models):
        raise UsageError(f"run: --model given twice: {sorted({m for m in args.models if args.models.count(m) > 1})}")
    config = RunConfig(
        model=args.models[0], tasks=tuple(args.tasks), device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, limit=args.limit, seed=args.seed, output_dir=args.output_dir,
        writers=tuple(args.writers or ("json",)), progress=not args.quiet and sys.stderr.isatty(),
        cache=args.cache, cache_dir=args.cache_dir, num_workers=args.num_workers, shard_size=args.shard_size,
        check_determinism=args.check_determinism,
    )
    for path in run_models([replace(config, model=model) for model in args.models], registries):
        print(path)
    return 0


def cmd_list(args: argparse.Namespace, registries: Registries) -> int:
    registry = getattr(registries, "task_kinds" if args.what == "kinds" else args.what)
    for name, entry in registry.items():
        description = getattr(entry.item, "description", "") if args.what != "tasks" else str(entry.item)
        print(f"{name}\t[{entry.plugin}]\t{description}".rstrip())
    if args.what == "encoders":
        print("# other names are resolved by plugins, e.g. openclip:ARCH/TAG, hf:ORG/REPO, a local path")
    return 0


def cmd_plugins(args: argparse.Namespace, registries: Registries) -> int:
    for info in registries.pm.plugins_info():
        dist = f"{info.distribution} {info.version}" if info.distribution else "(not from a distribution)"
        print(f"{info.name}\t{info.module}\t{dist}")
    return 0


def _validate_file(path: Path, registries: Registries) -> None:
    from .result import read_result
    from .taskspec import load_task_spec

    if path.suffix in (".yaml", ".yml"):
        load_task_spec(path, registries)
    elif path.suffix == ".json":
        read_result(path)
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
    return 1 if failures else 0


def cmd_leaderboard(args: argparse.Namespace, registries: Registries) -> int:
    from .atomicfile import write_text_atomic
    from .leaderboard import collect, render

    write_text_atomic(args.output, render(collect(args.results_dir)))
    print(args.output)
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
        ok, dropped, orphans = target.verify()
        problems += dropped
        print(f"{target.id[:12]}\t{ok} shards ok\t{dropped} dropped (recomputed on next use)\t{orphans} orphans removed")
    return 1 if problems else 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "plugins": cmd_plugins, "validate": cmd_validate,
            "leaderboard": cmd_leaderboard, "cache": cmd_cache}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` console script; returns the exit code."""
    from .pluginmanager import get_plugin_manager
    from .registry import collect

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        pm = get_plugin_manager(plugin_flags(argv))
        args = build_parser(pm).parse_args(argv)
        handler = COMMANDS.get(args.command) or args.handler
        return handler(args, collect(pm))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
