"""Whether a run folder allows a run: resume only a checkpoint of the current format, onto the
same options and data and with the metrics of the same run, never over another run without
``--overwrite``; what a checkpoint records of its run's data."""
from __future__ import annotations

import os

from ..mgrit.hierarchy import Hierarchy
from .checkpoint import FORMAT, check_metrics, load_checkpoint
from .config import CLASSES_GIVEN, TrainConfig, _data_kind
from .data import frame_listing, hmdb51_listing, npz_checksums
from .data.features import file_digest

def _absolute_data(spec):
    """The data spec with its file or folder as an absolute path: what a checkpoint stores, so
    that the run can be evaluated and resumed from any working directory."""
    kind, source = _data_kind(spec)
    return spec if source is None else f"{kind}:{_data_name(spec)}"


def _mismatch(a, b, other_file=False):
    """The options of config ``a`` that differ from checkpoint config ``b`` and may not.

    A checkpoint records the data's own number of classes as ``num_classes`` (only synthetic
    data takes it as an option). ``other_file``: another npz file may stand in for ``b``'s
    (the comparison with the checkpoint's data record decides)."""
    da, db = a.to_dict(), b.to_dict()
    da["data"], db["data"] = _absolute_data(da["data"]), _absolute_data(db["data"])
    for d in (da, db):
        if d.get("features") is not None:                    # (the run records it absolute)
            d["features"] = os.path.abspath(d["features"])
    kind_a, kind_b = _data_kind(da["data"])[0], _data_kind(db["data"])[0]
    free = set(TrainConfig.RESUMABLE)
    if kind_a == kind_b and kind_a not in CLASSES_GIVEN:
        free.add("num_classes")
    if kind_a == kind_b == "npz" and other_file:
        free.add("data")
    return sorted(k for k in da if k not in free and da[k] != db[k])


_DATA_FIELDS = ("T", "F", "classes", "sequences")


def _data_record(data, spec, listing=True, cfg=None):
    """What a checkpoint records of its run's data (``meta.data``): T, F, the numbers of classes
    and sequences, for an npz file the CRC32 and size of ``x`` and ``y`` (`npz_checksums`), for
    a frame folder the digest of its frames' paths and sizes (`frame_listing`), for HMDB51 that
    of its split's videos and marks (`hmdb51_listing`; listings only where ``listing``: they
    stat every file, which rank 0 alone needs to do), and the digest of a feature network's
    file (``cfg.features``)."""
    record = {"T": int(data.seq_len), "F": int(data.input_size),
              "classes": int(data.num_classes), "sequences": len(data.y_train) + len(data.y_test)}
    kind, source = _data_kind(spec)
    if kind == "npz":
        record["members"] = npz_checksums(source)
    elif kind == "frames" and listing:
        record["listing"] = frame_listing(source)
    elif kind == "hmdb51" and listing:
        record["listing"] = hmdb51_listing(source, cfg.split, cfg.splits_dir)
    if cfg is not None and cfg.features is not None:
        record["features"] = file_digest(cfg.features)
    return record


def _data_changes(now, then):
    """How data record ``now`` differs from a checkpoint's ``then``, as phrases ("T 64
    (checkpoint: 32)"); empty for the same data. What ``then`` lacks is not compared."""
    changes = [f"{k} {now.get(k)} (checkpoint: {then[k]})" for k in _DATA_FIELDS
               if k in then and now.get(k) != then[k]]
    if changes:                                              # (the CRCs differ too, surely)
        return changes
    for name, was in then.get("members", {}).items():
        got = now.get("members", {}).get(name)
        if got is not None and list(got) != list(was):
            changes.append(f"{name} CRC32 {got[0]:08x}, {got[1]} bytes (checkpoint: "
                           f"{was[0]:08x}, {was[1]} bytes)")
    got, was = now.get("listing"), then.get("listing")
    if got is not None and was is not None and got != was:   # (a rank that skipped it: None)
        what = "frame files" if "frames" in got else "videos of the split"
        n = (lambda listing: listing.get("frames", listing.get("videos")))
        changes.append(f"{what} {n(got)}, names and sizes {got['sha256']} "
                       f"(checkpoint: {n(was)}, {was['sha256']})")
    if "features" in then and now.get("features") != then["features"]:
        changes.append(f"feature network {now.get('features')} (checkpoint: "
                       f"{then['features']})")
    return changes


def _same_npz(spec, ckpt):
    """Whether ``spec`` names an npz file whose x and y are the checkpoint's recorded ones (a
    moved or copied data file); False where the checkpoint records no checksums."""
    kind, source = _data_kind(spec)
    members = (ckpt.data or {}).get("members")
    if kind != "npz" or _data_kind(ckpt.config.data)[0] != "npz" or members is None \
            or not os.path.isfile(source):
        return False
    try:
        return npz_checksums(source) == members              # (JSON: lists, as it gives)
    except ValueError:                                       # not an npz: the loader says so
        return False


def _check_run_data(spec, ckpt, where, moved_ok):
    """ValueError when ``spec`` is the checkpoint's data and its file or folder is gone: said as
    such, with the way on (a plain "no such file" named neither). ``moved_ok``: another path
    to the data may be given with --data."""
    kind, source = _data_kind(spec)
    if source is None or _absolute_data(spec) != _absolute_data(ckpt.config.data):
        return
    source = _data_name(spec)
    if os.path.isfile(source) if kind == "npz" else os.path.isdir(source):
        return
    what = "file" if kind == "npz" else "folder"
    if moved_ok:
        how = f"if it was moved, pass --data {kind}:{'NEWPATH' if kind == 'npz' else 'NEWROOT'}"
    elif kind == "npz":
        how = ("this checkpoint does not record what the data was (no meta.data), so it "
               "resumes on that path only: put the file back there")
    else:
        how = "put it (or a link to it) back at that path to resume"
    raise ValueError(f"{where}: the run's data {what} {source} (recorded in the checkpoint) is "
                     f"missing; {how}")


def _data_name(spec):
    """The data's file or folder as an absolute path, or the built-in task's name."""
    source = _data_kind(spec)[1]
    return spec if source is None else os.path.abspath(source)


def _open_run(cfg, out, ckpt_path, resume, overwrite):
    """``(ckpt, history, stale)``: the checkpoint to resume (or None), the metrics records of
    its epochs, and whether metrics.jsonl holds a line past them (`check_metrics`), after the
    checks that the run folder allows this run: --resume needs a checkpoint of the current
    format whose options and data fit, and metrics of the same run; without it, none may exist
    unless ``overwrite``."""
    ckpt, history, stale = None, [], False
    if out is not None:
        if resume:
            if not os.path.isfile(ckpt_path):
                raise ValueError(f"{ckpt_path}: no checkpoint to resume (run without --resume "
                                 "/ resume=True)")
            ckpt = load_checkpoint(ckpt_path)
            if ckpt.format != FORMAT:
                raise ValueError(f"{ckpt_path}: meta.format is {ckpt.format}: a checkpoint of "
                                 "an earlier version, without a run identity or a digest; it "
                                 f"can be evaluated but not resumed (format {FORMAT}): start "
                                 "the run afresh with --overwrite")
            bad = _mismatch(cfg, ckpt.config, other_file=ckpt.data is not None)
            if bad:
                raise ValueError(f"{ckpt_path}: options differ from the checkpoint's: " +
                                 ", ".join(f"{k}={getattr(cfg, k)!r} (checkpoint: "
                                           f"{getattr(ckpt.config, k)!r})" for k in bad))
            _check_run_data(cfg.data, ckpt, ckpt_path, moved_ok=_data_kind(cfg.data)[0] == "npz"
                            and ckpt.data is not None)
            history, stale = check_metrics(out, ckpt, ckpt_path)
        elif os.path.isfile(ckpt_path) and not overwrite:
            raise ValueError(f"{ckpt_path} exists: pass --resume (resume=True) to continue "
                             "that run, --overwrite (overwrite=True) to start afresh, or another "
                             "--out")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out} is a file, not a run folder")
    elif resume:
        raise ValueError("resume needs an out folder")
    return ckpt, history, stale


def _check_fit(cfg, data, data_record, ckpt, ckpt_path, comm, n_batches):
    """ValueError unless the loaded data is the resumed run's (T, F, classes, files: before
    the model is built), the checkpoint holds ``n_batches`` steps per epoch of it, and, for
    MGRIT, the hierarchy fits its T on these ranks."""
    changes = [] if ckpt is None or ckpt.data is None else _data_changes(data_record, ckpt.data)
    if changes:
        now, then = _data_name(cfg.data), _data_name(ckpt.config.data)
        raise ValueError(f"{ckpt_path}: " + (
            f"the data in {now} no longer matches the checkpoint's: " if now == then else
            f"{now} holds other data than the run was trained on ({then}): ")
            + ", ".join(changes))
    if ckpt is not None and len(ckpt.steps["loss"]) != ckpt.epoch * n_batches:
        raise ValueError(f"{ckpt_path}: steps.loss holds {len(ckpt.steps['loss'])} steps, "
                         f"expected {ckpt.epoch * n_batches} (meta.epoch {ckpt.epoch} x "
                         f"{n_batches} batches per epoch)")
    if cfg.solver == "mgrit":
        Hierarchy(data.seq_len, cfg.cf, cfg.levels, rank=0 if comm is None else comm.Get_rank(),
                  size=1 if comm is None else comm.Get_size())


