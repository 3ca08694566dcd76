#!/usr/bin/env python3
"""Loads ONE file with a real loader and reports what happened, as one JSON line.

Run it only inside the throwaway sandbox that tools/oracle/run-oracle.sh builds (bubblewrap:
no network, a private /tmp, everything else read-only): the files it loads are live exploits.

Usage: detonate.py LOADER FILE, LOADER one of torch (torch.load(weights_only=False)), joblib
(joblib.load), numpy (numpy.load(allow_pickle=True)), pickle (pickle.load, the C unpickler).

Reported: marker (the payload's `touch /tmp/airlock-oracle-marker` ran), error (the exception
the loader raised, if any), storage_overflow (a loaded tensor's storage claims more bytes than
the record it was built from: reads past its buffer).
"""
import json
import os
import sys
import zipfile

MARKER = "/tmp/airlock-oracle-marker"


def storage_overflow(obj, path):
    """True when a tensor in `obj` has a storage larger than its data/<key> record."""
    import torch
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        records = [i.file_size for i in z.infolist() if "/data/" in i.filename]
    biggest = max(records) if records else 0
    tensors = []
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
    elif isinstance(obj, dict):
        tensors.extend(v for v in obj.values() if isinstance(v, torch.Tensor))
    return any(t.storage().nbytes() > biggest for t in tensors)


def main():
    loader, path = sys.argv[1], sys.argv[2]
    result = {"marker": False, "error": None, "storage_overflow": False}
    try:
        if loader == "torch":
            import torch
            obj = torch.load(path, weights_only=False) if "weights_only" in \
                torch.load.__code__.co_varnames else torch.load(path)
            result["storage_overflow"] = storage_overflow(obj, path)
        elif loader == "joblib":
            import joblib
            joblib.load(path)
        elif loader == "numpy":
            import numpy
            obj = numpy.load(path, allow_pickle=True)
            if hasattr(obj, "files"):
                for name in obj.files:
                    obj[name]
        elif loader == "pickle":
            import pickle
            with open(path, "rb") as f:
                pickle.load(f)
        else:
            raise SystemExit("unknown loader " + loader)
    except MemoryError:
        result["error"] = "MemoryError"
    except BaseException as e:  # the loaders raise anything on hostile input
        result["error"] = type(e).__name__ + ": " + str(e)[:160]
    result["marker"] = os.path.exists(MARKER)
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
