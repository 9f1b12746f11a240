"""`python -m core dataset new|add|rm|mv|rename|restore|trash|ls`: build and tend a dataset from the shell.

The same `core.data.editing` functions the Datasets page calls; every batch is checked before the first change.
Nothing here imports TensorFlow, and the data modules load only when an action runs.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from core import options
from core.errors import UserError


def add_parser(sub) -> None:
    """The `dataset` sub-command and its actions (called once from `core.__main__.build_parser`)."""
    p = sub.add_parser(
        "dataset", help="build and tend a dataset: new, add, rm, mv, rename, restore, trash, ls"
    )
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = act.add_parser("new", help="a new dataset with empty class folders")
    a.add_argument("name")
    a.add_argument("classes", nargs="*", metavar="CLASS")
    a.add_argument("--layout", choices=options.DATASET_LAYOUTS, default=options.DATASET_LAYOUTS[0],
                   help="flat: NAME/CLASS/*; splits: NAME/{train,validation,test}/CLASS/*")  # fmt: skip
    a = act.add_parser("add", help="add images (files, or every image directly in a folder) to a class; "
                       "a class not there yet is made")  # fmt: skip
    a.add_argument("name")
    a.add_argument("cls", metavar="CLASS")
    a.add_argument("paths", nargs="*", metavar="PATH")
    a.add_argument("--split", help="train, validation or test (a splits dataset; default train)")
    a = act.add_parser(
        "rm", help="move a dataset, a class (--class) or images (paths as `ls` shows them) to the trash"
    )
    a.add_argument("name")
    a.add_argument("images", nargs="*", metavar="IMAGE")
    a.add_argument("--class", dest="cls", metavar="CLASS")
    a = act.add_parser("mv", help="move images to another class: mv NAME IMAGE... CLASS")
    a.add_argument("name")
    a.add_argument("images", nargs="+", metavar="IMAGE")
    a.add_argument("to_class", metavar="CLASS")
    a = act.add_parser(
        "rename", help="rename a dataset (rename NAME NEW) or a class (rename NAME --class OLD NEW)"
    )
    a.add_argument("name")
    a.add_argument("new", nargs="?")
    a.add_argument("--class", dest="cls", nargs=2, metavar=("OLD", "NEW"))
    a = act.add_parser(
        "restore", help="undo a removal: restore ENTRY (a dataset) or restore NAME ENTRY (inside one)"
    )
    a.add_argument("name")
    a.add_argument("entry", nargs="?")
    a = act.add_parser("trash", help="list what restore can bring back (deleted datasets, or inside NAME)")
    a.add_argument("name", nargs="?")
    a = act.add_parser("ls", help="classes with image counts, or a class's images (--class, --search)")
    a.add_argument("name")
    a.add_argument("--class", dest="cls", metavar="CLASS")
    a.add_argument("--search", default="", help="only file names containing this")
    p.set_defaults(fn=cmd_dataset)


def _read_inputs(paths: list[str]) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """(name, bytes) of every file given and every file directly inside a folder given; links, sub-folders and
    special files are skipped with why. Capped like an upload before a byte is stored."""
    from core.data import editing
    from core.validation import human_bytes, read_regular_file

    files: list[tuple[str, bytes]] = []
    skipped: list[tuple[str, str]] = []
    total = 0

    def take(path: Path, label: str) -> None:
        nonlocal total
        if len(files) >= editing.MAX_ADD_FILES:
            raise UserError(f"more than {editing.MAX_ADD_FILES} files at once; add them in parts")
        try:
            data = read_regular_file(path, editing.MAX_FILE_BYTES, "image", label)
        except UserError as exc:
            skipped.append((label, str(exc)))
            return
        total += len(data)
        if total > editing.MAX_ADD_BYTES:
            raise UserError(
                f"these files hold more than {human_bytes(editing.MAX_ADD_BYTES)}; add them in parts"
            )
        files.append((label, data))

    for raw in paths:
        p = Path(raw)
        try:
            st = os.lstat(p)
        except OSError as exc:
            raise UserError(f"cannot read {raw} ({exc.strerror or exc})") from None
        if stat.S_ISLNK(st.st_mode):
            skipped.append((raw, "symbolic link"))
        elif stat.S_ISDIR(st.st_mode):
            for child in sorted(p.iterdir()):
                if child.is_symlink():
                    skipped.append((str(child), "symbolic link"))
                elif child.is_dir():
                    skipped.append((str(child), "a folder inside the folder (only its own images are read)"))
                else:
                    take(child, child.name)
        else:
            take(p, p.name)
    return files, skipped


def _new(args) -> int:
    from core.data import editing

    root = editing.new_dataset(args.name, args.classes, args.layout)
    print(f"created {root} ({args.layout}; classes: {', '.join(args.classes) or 'none yet'})")
    return 0


def _add(args) -> int:
    from core.data import editing

    t = editing.tree(args.name)
    files, skipped = _read_inputs(args.paths)
    if args.cls not in t.counts:
        editing.add_class(args.name, args.cls)
        print(f"added class {args.cls}")
    rep = editing.add_images(args.name, args.cls, files, split=args.split) if files else None
    added = rep.added if rep else []
    for label, why in skipped + (rep.skipped if rep else []):
        print(f"skipped {label}: {why}")
    if args.paths:
        print(f"added {len(added)} images to {args.name}/{args.cls}")
    return 1 if args.paths and not added else 0


def _rm(args) -> int:
    from core.data import datasets, editing

    if args.cls and args.images:
        raise UserError("give either --class CLASS or images, not both")
    if args.cls:
        entry = editing.delete_class(args.name, args.cls)
        print(
            f"moved class {args.cls} to the trash; undo with `python -m core dataset restore {args.name} {entry}`"
        )
    elif args.images:
        for rel in args.images:  # all checked before the first one moves
            editing.check_image(args.name, rel)
        for rel in args.images:
            entry = editing.remove_image(args.name, rel)
            print(f"moved {rel} to the trash; undo with `python -m core dataset restore {args.name} {entry}`")
    else:
        entry = datasets.delete_dataset(args.name)
        print(f"moved dataset {args.name} to the trash; undo with `python -m core dataset restore {entry}`")
    return 0


def _mv(args) -> int:
    from core.data import editing

    t = editing.tree(args.name)
    if args.to_class not in t.counts:
        raise UserError(
            f"no class {args.to_class!r} in dataset {args.name} (classes: {', '.join(t.classes)})"
        )
    for rel in args.images:
        if editing.check_image(args.name, rel) == args.to_class:
            raise UserError(f"{rel} is already in class {args.to_class}")
    for rel in args.images:
        print(f"{rel} -> {editing.move_image(args.name, rel, args.to_class)}")
    return 0


def _rename(args) -> int:
    from core.data import editing

    if args.cls and args.new:
        raise UserError("give either NEW (the dataset's new name) or --class OLD NEW, not both")
    if args.cls:
        editing.rename_class(args.name, *args.cls)
        print(f"renamed class {args.cls[0]} to {args.cls[1]} in {args.name}")
    elif args.new:
        print(f"renamed dataset {args.name} to {editing.rename_dataset(args.name, args.new).name}")
    else:
        raise UserError("give the new name: rename NAME NEW, or rename NAME --class OLD NEW")
    return 0


def _restore(args) -> int:
    from core.data import datasets, editing

    if args.entry is None:
        print(f"restored dataset {datasets.restore_dataset(args.name)}")
    else:
        restored = editing.restore(args.name, args.entry)
        print(f"restored {', '.join(restored) or args.entry} in {args.name}")
    return 0


def _trash(args) -> int:
    import time

    from core.data import datasets, editing

    entries = editing.trash_entries(args.name) if args.name else datasets.trashed_datasets()
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.deleted_at))
        print(f"{e.entry:40s} {', '.join(e.paths) or e.original}  deleted {when}")
    return 0


def _ls(args) -> int:
    from core.data import editing

    if args.cls:
        for rel in editing.images(args.name, args.cls, args.search):
            print(rel)
        return 0
    t = editing.tree(args.name)
    print(f"{t.name}: {t.layout} layout")
    for c in t.classes:
        per = ", ".join(f"{s} {n}" for s, n in t.counts[c].items()) if t.layout == "splits" else ""
        print(f"{c:28s} {t.total(c):6d} images" + (f"  ({per})" if per else ""))
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    return {"new": _new, "add": _add, "rm": _rm, "mv": _mv, "rename": _rename, "restore": _restore,
            "trash": _trash, "ls": _ls}[args.action](args)  # fmt: skip
