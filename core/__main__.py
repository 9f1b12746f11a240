"""The CLI: `python -m core COMMAND`, one sub-command per user action (`python -m core --help` lists them).

Same code as the UI. Any error prints one line on stderr and exits non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core import dataset_cli, options  # noqa: E402
from core.errors import UserError, first_line  # noqa: E402


def cmd_datasets(args) -> int:
    from core.data import datasets

    if _trash_action(
        args, "datasets", datasets.delete_dataset, datasets.restore_dataset, datasets.trashed_datasets
    ):
        return 0
    for d in datasets.catalog():
        counts = ", ".join(f"{s} {sum(c.values())}" for s, c in d.counts.items())
        avail = "" if d.available else "  [not downloaded]"
        print(f"{d.name:28s} {len(d.class_names):3d} classes  {counts}{avail}")
    return 0


def cmd_download(args) -> int:
    from core.data import keras_datasets

    arrays = keras_datasets.load_arrays(args.name, allow_download=True)
    print(f"{args.name}: " + ", ".join(f"{s} {len(y)}" for s, (_, y) in arrays.items()))
    return 0


def cmd_import(args) -> int:
    from core.data.importer import import_dataset

    rep = import_dataset(Path(args.path), args.name)
    for split, per in rep.class_counts.items():
        print(f"{split}: " + ", ".join(f"{c} {n}" for c, n in per.items()))
    print(f"imported {rep.imported} images into {rep.path}")
    for member, reason in rep.skipped:
        print(f"skipped {member}: {reason}")
    return 0


def _request(args):
    from core.training.trainer import TrainRequest

    return TrainRequest(
        dataset=args.dataset, preset=args.preset, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, learning_rate=args.lr, seed=args.seed, val_split=args.val_split,
        image_size=tuple(args.image_size) if args.image_size else None, channels=args.channels,
        class_weights=args.class_weights, early_stopping=args.early_stopping, restore_best=not args.no_restore_best,
        target_accuracy=args.target_accuracy, weights=args.weights, limit=args.limit, strategy=args.strategy or "default",
        pinned=args.pin, lr_schedule=args.lr_schedule, label_smoothing=args.label_smoothing,
    )  # fmt: skip


def cmd_train(args) -> int:
    from core.training import distribute, runs, trainer

    distribute.split_cpu()  # before anything starts TensorFlow (resolve builds a tiny model to size-check)

    if args.run:
        run = runs.get_run(args.run)
        planned = run.config.strategy
        if args.strategy and args.strategy != planned:
            raise UserError(f"run {run.run_id} was created for --strategy {planned}, not {args.strategy}")
    else:
        if not args.dataset:
            raise UserError("train needs --dataset NAME (or --run RUN-ID)")
        run = trainer.start_run(_request(args))
    echo = (lambda s: print(s, flush=True)) if not args.quiet else None
    status = trainer.train_run(run.path, echo=echo)
    if status["state"] == "deleted":
        print(f"run {run.run_id} was deleted while training; stopped", file=sys.stderr)
        return 0
    if status["state"] == "failed":
        print(f"error: {status.get('error')}", file=sys.stderr)
        print(run.run_id)
        return 1
    if status.get("note") and echo:
        echo(status["note"])
    for w in status.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{status['state']}", file=sys.stderr)
    print(run.run_id)
    return 0


def _when(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _trash_action(args, command: str, delete, restore, trashed) -> bool:
    """`--delete`, `--restore` and `--trash` mean the same for runs and datasets; True when one was handled."""
    if args.delete:
        entry = delete(args.delete)
        print(f"moved {args.delete} to the trash; undo with `python -m core {command} --restore {entry}`")
    elif args.restore:
        print(f"restored {restore(args.restore)}")
    elif args.trash:
        for e in trashed():
            print(f"{e.entry:64s} {e.original:28s} deleted {_when(e.deleted_at)}")
    else:
        return False
    return True


def cmd_runs(args) -> int:
    from core.training import jobs, runs

    if _trash_action(args, "runs", runs.delete_run, lambda e: runs.restore_run(e).run_id, runs.trashed_runs):
        return 0
    if args.rename:
        print(runs.set_label(args.rename[0], name=args.rename[1]).short_label())
        return 0
    if args.note:
        runs.set_label(args.note[0], note=args.note[1])
        print(f"note saved for {args.note[0]}")
        return 0
    if args.tags:
        tagged = runs.set_label(args.tags[0], tags=args.tags[1])
        print(f"tags of {args.tags[0]}: {', '.join(tagged.tags) or '(none)'}")
        return 0
    from core.data import fingerprint, renames

    all_runs = jobs.list_runs()
    data = fingerprint.data_states(
        (r.run_id, r.config.dataset, r.config.dataset_fingerprint) for r in all_runs
    )
    for r in all_runs:
        dur = runs.duration(r.status)
        print(f"{r.run_id:60s} {r.short_label()}  {r.status.get('epochs_done', 0)}/{r.config.epochs} "
              f"epochs  {(f'{dur:.0f}s' if dur else '-')}")  # fmt: skip
        if r.note:
            print(f"    note: {r.note.splitlines()[0]}")
        if r.tags:
            print(f"    tags: {', '.join(r.tags)}")
        for w in r.warnings:
            print(f"    warning: {w}")
        if moved := renames.renamed_to(r.config.dataset):
            print(f"    dataset {r.config.dataset} renamed to {moved}")
        state, now = data[r.run_id]
        if line := fingerprint.describe_state(state, r.config.dataset_fingerprint, now):
            print(f"    {line}")
    return 0


def cmd_trash(args) -> int:
    """Deleted runs and datasets stay in their trash until a person empties it here (with --yes)."""
    from core.data import trash_empty

    items = trash_empty.plan(args.older_than)
    if not args.empty:
        for i in items:
            print(f"{i.where:24s} {i.entry.entry:48s} {i.size:>12,d} B  deleted {_when(i.entry.deleted_at)}")
        print(f"{trash_empty.describe(items)} in the trash; `python -m core trash --empty --yes` frees them")
        return 0
    print(f"will free {trash_empty.describe(items)}")
    if not items:
        return 0
    if not args.yes:
        raise UserError("nothing removed; add --yes to empty the trash for good")
    done, freed = trash_empty.empty(items)
    from core.validation import human_bytes

    print(f"emptied {done} trash entr{'y' if done == 1 else 'ies'}, freed {human_bytes(freed)}")
    return 0


def _print_sweep(sweep_id: str) -> None:
    from core.training import sweep_results, sweeps

    sweep = sweeps.get_sweep(sweep_id)
    print(sweep.label())
    print(sweep_results.format_table(sweep_results.table(sweep)))
    imp = sweep_results.importance(sweep)
    if imp.rows:
        print("parameter importance (random forest over completed trials): " +
              ", ".join(f"{r['parameter']} {r['importance']:.2f}" for r in imp.rows))  # fmt: skip


def cmd_sweep(args) -> int:
    from core.training import sweeps

    if args.drain:  # the background runner the app starts
        sweeps.drain(echo=lambda s: print(s, flush=True))
        return 0
    if args.cancel:
        dropped, stopping = sweeps.cancel(args.cancel)
        print(f"cancelled {args.cancel}: {dropped} pending trial(s) dropped"
              + (f", stop requested for {', '.join(stopping)}" if stopping else ""))  # fmt: skip
        return 0
    if args.status is not None:
        if args.status:
            _print_sweep(args.status)
        else:
            for s in sweeps.list_sweeps():
                print(s.label())
        return 0
    if not args.dataset or not args.grid:
        raise UserError("sweep needs --dataset NAME and --grid NAME=VALUES ... (or --status / --cancel ID)")
    from core.training.trainer import TrainRequest

    base = TrainRequest(dataset=args.dataset, preset=args.preset, epochs=args.epochs, seed=args.seed,
                        limit=args.limit, weights=args.weights)  # fmt: skip
    space = sweeps.parse_space(args.grid)
    mode, count = ("random", args.random) if args.random is not None else ("grid", None)
    sweep = sweeps.create_sweep(base, space, mode, count, seed=args.seed)
    print(f"queued {sweep.sweep_id}: {len(sweep.trials)} trial(s); "
          f"`python -m core sweep --cancel {sweep.sweep_id}` cancels it", file=sys.stderr)  # fmt: skip
    echo = (lambda s: print(s, file=sys.stderr, flush=True)) if not args.quiet else None
    try:
        while not sweeps.get_sweep(sweep.sweep_id).done():
            try:
                sweeps.drain(echo=echo)
            except UserError:  # another process (the app's runner) drains the queue: wait for it there
                print("another runner is training the queue; waiting for this sweep", file=sys.stderr)
                sweeps.wait(sweep.sweep_id, while_runner=True)  # and take over if that runner dies
    except KeyboardInterrupt:
        print(f"error: interrupted; {sweep.sweep_id} stays queued (the app resumes it; --cancel drops it)",
              file=sys.stderr)  # fmt: skip
        return 130
    _print_sweep(sweep.sweep_id)
    return 0


def cmd_stop(args) -> int:
    from core.training import jobs

    jobs.stop(args.run)
    print(f"stop requested for {args.run}")
    return 0


def _loaded_model(args):
    from core.models import loading
    from core.training import runs

    if args.run:
        return loading.load_run_model(runs.get_run(args.run))
    if args.model:
        p = Path(args.model)
        names = args.class_names.split(",") if args.class_names else None
        return loading.describe(loading.load_model(p), loading.read_meta(p), p.name, names)
    raise UserError("give --run RUN-ID or --model PATH")


def cmd_predict(args) -> int:
    from core.analysis.prediction import predict_sources

    lm = _loaded_model(args)
    if args.run and lm.detector is None:  # the unfamiliar-image score is fitted on first use, then cached
        from core.analysis import unfamiliar
        from core.training import runs

        try:
            lm.detector = unfamiliar.ensure(runs.get_run(args.run), lm)
        except UserError as exc:
            print(f"note: no unfamiliar-image score: {exc}", file=sys.stderr)
    results = predict_sources(lm, [(f, Path(f)) for f in args.images])
    failed = False
    for r in results:
        try:  # allow_nan=False: NaN is not JSON; a non-finite number becomes this file's error, never output
            line = json.dumps(r.as_json(), allow_nan=False)
        except ValueError:
            from core.analysis.prediction import NON_FINITE

            line = json.dumps({"file": r.name, "error": NON_FINITE})
            failed = True
        failed = failed or bool(r.error)
        print(line)
    return 1 if failed else 0


def cmd_evaluate(args) -> int:
    from core.analysis import evaluation_runs

    result = evaluation_runs.evaluate_run(args.run, limit=args.limit, split=args.split)
    from core.analysis.evaluation import format_table

    print(format_table(result))
    if result.split == "val":
        from core.training import runs

        recorded = runs.get_run(args.run).status.get("best_val_accuracy")
        rec = (
            f" (training recorded {recorded:.10f} for the saved model)" if isinstance(recorded, float) else ""
        )
        print(f"validation accuracy {result.accuracy:.10f}{rec}")
    if args.tta:
        from core.analysis import tta

        print(tta.evaluate_run(args.run, split=result.split, limit=args.limit).describe())
    return 0


def cmd_export(args) -> int:
    from core.analysis import export
    from core.training import runs

    run = runs.get_run(args.run)

    def report(fmt: str, check: export.ExportCheck) -> None:
        print(export.check_line(fmt, check), file=sys.stderr)

    path = export.export(run.path, args.format, Path(args.out) if args.out else None, on_check=report)
    print(path)
    return 0


def cmd_calibrate(args) -> int:
    from core.analysis import calibration

    if not 0.0 < args.accuracy <= 1.0:
        raise UserError(f"--accuracy must be in (0, 1]; got {args.accuracy}")
    data = calibration.calibrate_run(args.run, args.accuracy)
    for line in calibration.describe(data):
        print(line)
    return 0


def cmd_timelapse(args) -> int:
    from core.analysis import timelapse_frames
    from core.training import runs

    run = runs.get_run(args.run)
    timelapse_frames.require_index(run.path)  # refused before TensorFlow loads
    timelapse_frames.target_folder(run.path, Path(args.out))
    folder, count = timelapse_frames.write_frames(run.path, Path(args.out))
    print(f"{count} frames and a GIF per pinned image in:", file=sys.stderr)
    print(folder)
    return 0


def cmd_filters(args) -> int:
    from core.analysis import png_out

    out = png_out.check(Path(args.out))  # in a second, before TensorFlow loads and minutes of work
    from core.analysis import filter_viz

    grid, meta, cached = filter_viz.run_filter_grid(args.run, args.layer, iterations=args.iterations)
    filter_viz.write_new_png(out, grid, meta)
    print(f"{out}  ({filter_viz.describe(meta)}{'; from the run cache' if cached else ''})")
    return 0


def cmd_lr_find(args) -> int:
    from core.training.trainer import TrainRequest

    plot = None
    if args.plot:
        from core.analysis import png_out

        plot = png_out.check(Path(args.plot))  # refused in a second, before TensorFlow loads
    req = TrainRequest(dataset=args.dataset, preset=args.preset, batch_size=args.batch_size,
                       optimizer=args.optimizer, seed=args.seed, limit=args.limit)  # fmt: skip
    from core.training import lr_finder

    result = lr_finder.find_lr(req, steps=args.steps)
    print(lr_finder.describe(result), file=sys.stderr)
    if plot is not None:
        from core.analysis import png_out

        print(f"plot: {png_out.write(plot, lr_finder.plot_png(result))}", file=sys.stderr)
    if result.suggestion is None:
        return 1
    print(f"{result.suggestion:.3g}")
    return 0


def cmd_compare(args) -> int:
    from core.analysis import comparison
    from core.training import runs

    comparison.check_comparable(runs.get_run(args.run_a), runs.get_run(args.run_b))  # before TensorFlow loads
    result = comparison.compare_runs(args.run_a, args.run_b, split=args.split, limit=args.limit)
    print(json.dumps(result.to_dict(), indent=2) if args.json else comparison.format_text(result))
    return 0


FIX_ACTIONS = ("relabel", "set-aside", "keep", "undo", "list")


def cmd_fix(args) -> int:
    from core.data import fixes

    if args.action == "list":
        acts = fixes.journal(args.dataset)
        if args.json:
            print(json.dumps([{**a.__dict__} for a in acts]))
        for a in [] if args.json else acts:
            print(f"#{a.id:<5d} {'undone  ' if a.undone else 'in force'}  {a.describe()}")
        return 0
    if args.action == "undo":
        if args.paths:
            raise UserError("undo takes no paths; give --id N to undo a chosen fix (default: the last)")
        for a in fixes.undo(args.dataset, args.id):
            print(f"undone #{a.id}: {a.describe()}")
        return 0
    if args.action == "relabel" and not args.to:
        raise UserError("relabel needs --to CLASS")
    if not args.paths:
        raise UserError(f"{args.action} needs at least one image path, relative to the dataset folder")
    done, failed = fixes.apply(args.dataset, args.action.replace("-", "_"), args.paths, args.to)
    for a in done:
        print(f"#{a.id}: {a.describe()}" + (f" -> {a.new_path}" if a.new_path != a.path else ""))
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0


def cmd_hardest(args) -> int:
    from core import validation
    from core.analysis import evaluation_runs, hardest
    from core.training import runs

    validation.check_int(args.per_class, "--per-class", 1, 1000)
    run = runs.get_run(args.run)
    result = evaluation_runs.cached_result(run) or evaluation_runs.evaluate_run(args.run)
    loss = hardest.losses(result)
    pairs = hardest.most_confused(result)
    top = hardest.hardest(result, args.per_class)
    names = result.class_names
    paths = result.paths or [f"#{i}" for i in range(result.num_samples)]
    rows = {names[c]: [{"path": paths[i], "loss": float(loss[i]), "predicted": names[int(result.predictions[i])]}
                       for i in idx] for c, idx in top.items()}  # fmt: skip
    if args.json:
        print(json.dumps({"split": result.split, "most_confused": [[p.true, p.predicted, p.count] for p in pairs],
                          "hardest": rows}))  # fmt: skip
        return 0
    print(f"most confused on the {result.split} split (true -> predicted: images)")
    for p in pairs[:10]:
        print(f"  {p.true} -> {p.predicted}: {p.count}")
    for c, items in rows.items():
        print(f"highest loss in {c}:")
        for r in items:
            print(f"  {r['loss']:7.3f}  predicted {r['predicted']:12s} {r['path']}")
    return 0


def cmd_audit(args) -> int:
    from core.analysis import audit
    from core.analysis.audit import jobs as audit_jobs
    from core.analysis.audit.runner import check_request

    writer = (
        audit_jobs.StatusWriter(audit_jobs.check_status_dir(args.status_dir)) if args.status_dir else None
    )
    shown = {"stage": "", "step": -1}

    def progress(stage: str, fraction: float) -> None:
        step = int(fraction * 10)
        if stage != shown["stage"] or step != shown["step"]:
            shown.update(stage=stage, step=step)
            print(f"{fraction:4.0%}  {stage}", file=sys.stderr, flush=True)
        if writer is not None:
            writer(stage, fraction)

    try:
        dataset = args.dataset
        if not dataset:
            if not args.run:
                raise UserError("audit needs --dataset NAME (or --run RUN-ID)")
            from core.training import runs

            dataset = runs.get_run(args.run).config.dataset
        check_request(dataset, args.run, args.folds)  # refused in a second, before any image or TensorFlow
        report = audit.run_audit(
            dataset, args.run, folds=args.folds, progress=progress, use_cache=not args.fresh
        )
    except Exception as exc:
        if writer is not None:
            writer.finish(
                str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {first_line(exc)}"
            )
        raise
    if writer is not None:
        writer.finish(None)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.summary())
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse prints a usage block and then the error; a person gets the one line that says what is wrong."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m core", description="ConvNet Studio command line")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("datasets", help="list datasets with class and image counts; delete or restore one")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--delete", metavar="NAME", help="move data/NAME to the trash (data/.trash)")
    g.add_argument("--restore", metavar="ENTRY", help="put a deleted dataset back (see --trash)")
    g.add_argument("--trash", action="store_true", help="list deleted datasets")
    p.set_defaults(fn=cmd_datasets)
    p = sub.add_parser("download", help="download a Keras dataset (needs internet once)")
    p.add_argument("name", choices=["mnist", "fashion_mnist", "cifar10"])
    p.set_defaults(fn=cmd_download)
    p = sub.add_parser("import", help="import a zip or folder of class folders into data/NAME")
    p.add_argument("path")
    p.add_argument("--name", required=True)
    p.set_defaults(fn=cmd_import)
    p = sub.add_parser("train", help="train a preset; prints a line per epoch and the run id last")
    p.add_argument("--run", help="train an already-created run (what the UI starts)")
    p.add_argument("--dataset")
    p.add_argument("--preset", default=options.DEFAULT_PRESET)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=options.OPTIMIZERS)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=options.LR_SCHEDULES,
                   help="default: the preset's recipe (one-cycle peaks at --lr)")  # fmt: skip
    p.add_argument("--label-smoothing", type=float, metavar="S", help="0..0.5; default: the preset's recipe")
    p.add_argument("--seed", type=int, default=options.DEFAULT_SEED)
    p.add_argument("--val-split", type=float, default=options.DEFAULT_VAL_SPLIT)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--channels", type=int, choices=options.CHANNELS)
    p.add_argument("--class-weights", choices=options.CLASS_WEIGHT_METHODS)
    p.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE")
    p.add_argument("--no-restore-best", action="store_true")
    p.add_argument("--target-accuracy", type=float)
    p.add_argument(
        "--weights", default="imagenet", help="transfer presets: imagenet, random, or a weights file"
    )
    p.add_argument("--limit", type=int, help="at most this many images per split")
    p.add_argument("--strategy", choices=options.STRATEGIES,
                   help="default: one device; with --run, the run's own strategy")  # fmt: skip
    p.add_argument("--pin", action="append", metavar="IMAGE",
                   help="a validation image the time-lapse follows (repeat; default: one per class)")  # fmt: skip
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("runs", help="list runs (with warnings); delete, restore, rename or annotate one")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--delete", metavar="ID", help="move the run to the trash (runs/.trash)")
    g.add_argument("--restore", metavar="ID", help="put a deleted run back (see --trash)")
    g.add_argument("--trash", action="store_true", help="list deleted runs")
    g.add_argument("--rename", nargs=2, metavar=("ID", "NAME"), help='give the run a name ("" clears it)')
    g.add_argument("--note", nargs=2, metavar=("ID", "TEXT"), help='attach a note ("" clears it)')
    g.add_argument(
        "--tags", nargs=2, metavar=("ID", "TAGS"), help='set its tags, comma-separated ("" clears)'
    )
    p.set_defaults(fn=cmd_runs)
    p = sub.add_parser(
        "sweep", help="train a grid or random sample of settings, one run at a time; results table"
    )
    p.add_argument("--dataset")
    p.add_argument("--preset", default=options.DEFAULT_PRESET)
    p.add_argument("--grid", nargs="+", metavar="NAME=VALUES",
                   help=f"what to vary: {', '.join(('lr', 'batch') + options.SWEEP_PARAMS[2:])}; "
                        "e.g. lr=1e-3,3e-3 batch=64,128; a range lr=1e-4:1e-2 with --random")  # fmt: skip
    p.add_argument("--epochs", type=int, help="every trial's epochs (unless swept); default: the preset's")
    p.add_argument(
        "--random", type=int, metavar="K", help="random search: K trials drawn from the grid/ranges"
    )
    p.add_argument(
        "--seed", type=int, default=options.DEFAULT_SEED, help="training seed and random-search seed"
    )
    p.add_argument("--limit", type=int, help="at most this many images per split")
    p.add_argument(
        "--weights", default="imagenet", help="transfer presets: imagenet, random, or a weights file"
    )
    p.add_argument(
        "--status", nargs="?", const="", metavar="ID", help="a sweep's results table (no ID: list)"
    )
    p.add_argument("--cancel", metavar="ID", help="drop a sweep's pending trials and stop its running one")
    p.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("stop", help="ask a running job to stop")
    p.add_argument("run")
    p.set_defaults(fn=cmd_stop)
    p = sub.add_parser("predict", help="class probabilities, one JSON line per image")
    p.add_argument("--run")
    p.add_argument("--model")
    p.add_argument("--class-names", help="comma-separated, for a --model without them")
    p.add_argument("images", nargs="+")
    p.set_defaults(fn=cmd_predict)
    p = sub.add_parser("evaluate", help="test metrics and the per-class table")
    p.add_argument("--run", required=True)
    p.add_argument("--limit", type=int)
    p.add_argument("--split", choices=options.EVALUATION_SPLITS,
                   help="default: test, or validation when the dataset has no test split; val is the run's own")  # fmt: skip
    p.add_argument("--tta", action="store_true",
                   help="also measure test-time augmentation (shifts, and a mirror where the data allows)")  # fmt: skip
    p.set_defaults(fn=cmd_evaluate)
    p = sub.add_parser("export", help="export a run's model to a new file or folder (never replaces one)")
    p.add_argument("--run", required=True)
    p.add_argument("--format", required=True, choices=options.EXPORT_FORMATS)
    p.add_argument("--out", help="a new path, or an existing folder to write a new export into "
                   "(default: runs/ID/exports/)")  # fmt: skip
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("calibrate", help="fit a temperature on the validation split (ECE before/after), set the "
                       "reject threshold for a target accuracy, fit the unfamiliar-image score")  # fmt: skip
    p.add_argument("--run", required=True)
    p.add_argument("--accuracy", type=float, default=options.DEFAULT_TARGET_ACCURACY,
                   help="accuracy wanted on the accepted images; sets the reject threshold (default 0.95)")  # fmt: skip
    p.set_defaults(fn=cmd_calibrate)
    p = sub.add_parser("timelapse", help="a run's time-lapse as PNG frames and a GIF per pinned image")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True, help="a new folder, or an existing one to write a new folder into")
    p.set_defaults(fn=cmd_timelapse)
    p = sub.add_parser("filters", help="what each filter of a conv layer responds to most, as a PNG")
    p.add_argument("--run", required=True)
    p.add_argument("--layer", required=True, help="a conv layer name (base/inner inside a pretrained base)")
    p.add_argument("--out", required=True, help="a new .png file (an existing one is never replaced)")
    p.add_argument("--iterations", type=int, default=30, help="gradient-ascent steps per filter (1..200)")
    p.set_defaults(fn=cmd_filters)
    p = sub.add_parser(
        "lr-find", help="learning-rate range test on a fresh model; prints the suggested rate last"
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--preset", default=options.DEFAULT_PRESET)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=options.OPTIMIZERS)
    p.add_argument(
        "--steps", type=int, default=options.LR_FIND_STEPS, help="batches, one learning rate each (10..2000)"
    )
    p.add_argument("--seed", type=int, default=options.DEFAULT_SEED)
    p.add_argument("--limit", type=int, help="at most this many images per split")
    p.add_argument("--plot", help="also write the loss-vs-LR plot to this new .png file")
    p.set_defaults(fn=cmd_lr_find)
    p = sub.add_parser(
        "compare", help="two runs on the same test images: accuracy, per class, McNemar, size, latency"
    )
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--split", choices=options.EVALUATION_SPLITS,
                   help="default: test, or validation when the dataset has no test split")  # fmt: skip
    p.add_argument("--limit", type=int, help="at most this many images")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser(
        "trash", help="what the trash holds (runs, datasets, images); --empty --yes removes it"
    )
    p.add_argument("--empty", action="store_true", help="remove trash entries for good (needs --yes)")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="only entries deleted more than DAYS ago")
    p.add_argument(
        "--yes", action="store_true", help="really remove them (without it, only say what would go)"
    )
    p.set_defaults(fn=cmd_trash)
    dataset_cli.add_parser(sub)  # dataset new|add|rm|mv|rename|restore|trash|ls (core/dataset_cli.py)
    p = sub.add_parser(
        "fix", help="relabel, set aside or keep images of a folder dataset; undo; list the fixes"
    )
    p.add_argument("action", choices=FIX_ACTIONS)
    p.add_argument(
        "paths", nargs="*", help="image paths relative to the dataset folder, e.g. train/cat/a.png"
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--to", help="relabel: the class folder to move the images to")
    p.add_argument(
        "--id", type=int, help="undo: the fix to undo (with the rest of its bulk action); default the last"
    )
    p.add_argument("--json", action="store_true", help="list: one JSON array")
    p.set_defaults(fn=cmd_fix)
    p = sub.add_parser("hardest", help="a run's most confused classes and highest-loss images per class")
    p.add_argument("--run", required=True)
    p.add_argument("--per-class", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_hardest)
    p = sub.add_parser("audit", help="likely mislabeled images, duplicates, train/test leaks and outliers")
    p.add_argument("--dataset", help="the dataset to audit (default with --run: the run's)")
    p.add_argument("--run", help="also measure this run's held-out accuracy with and without leaked images")
    p.add_argument(
        "--folds", type=int, default=options.DEFAULT_AUDIT_FOLDS, help="cross-validation folds (2..10)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--fresh", action="store_true", help="recompute even when a stored result matches")
    p.add_argument("--status-dir", help=argparse.SUPPRESS)  # the background job's status folder
    p.set_defaults(fn=cmd_audit)
    return ap


def quiet_native_stderr() -> None:
    """TensorFlow's C++ runtime prints start-up chatter on fd 2; keep Python's stderr (our one-line errors,
    tracebacks in job logs) on the real stderr and send the native chatter away. CONVNET_NATIVE_LOGS=1 keeps it."""
    if os.environ.get("CONVNET_NATIVE_LOGS") == "1":
        return
    sys.stderr.flush()
    real = os.dup(2)
    sys.stderr = os.fdopen(real, "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    warnings.filterwarnings("ignore")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_native_stderr()
    try:
        return args.fn(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: still one line, never a traceback
        print(f"error: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
