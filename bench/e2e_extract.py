#!/usr/bin/env python3
"""The main job end to end: JPEG files in, ResNet-50 pooled features out, Quarry against its peers.

Generates photo-like JPEGs once (smooth colour fields, shapes with hard edges and noise at three
scales, so the files have realistic sizes: about 75 KB at 500x375 and 4-5 MB at 4000x3000, quality
90), then times in one run, in interleaved rounds:

  decode    decode + preprocess alone, ONE core, on the 500x375 set and on the 4000x3000 set:
            `quarry extract resnet50 --layer input --pool global_average --decode-workers 1` under
            `taskset -c 0` against PIL (Image.open(...).convert("RGB"), resize shorter side 256
            BILINEAR, centre crop 224, to float, normalise, HWC -> CHW: torchvision's ImageNet eval
            transform in numpy) in a subprocess under the same `taskset -c 0`, reading each file
            from disk as Quarry does. Both by wall time and by CPU time (Quarry: a run over the set
            minus a run over one image, which takes out the model build; PIL: its loop's clock and
            process time), since on a shared machine the wall time of a one-core run mostly
            measures the other tenants of that core.
  e2e       the mixed set (sizes from 500x375 to 4000x3000), files to features, wall time of the
            whole process: `quarry extract resnet50 --device D --batch B` for each --devices entry,
            against PIL + the same transforms in a multiprocessing.Pool of every core feeding
            onnxruntime (all cores, CPU) on ResNet-50 (bench/make_peer_models.py's resnet50.onnx);
            where torch with CUDA imports, also a torchvision-style Dataset + DataLoader (every core)
            feeding torchvision's resnet50 on the GPU (skipped otherwise, and said so).
  cosine    features from scaled JPEG decoding (the default) against --exact-decode, per zoo model
            and image size: the cosine of each image's two feature rows, and (because features of
            untrained, seeded networks, which is all there is here without downloading weights,
            are alike for every image) the change |scaled - exact| relative to the median distance
            between the exact features of different images; the same for the preprocessed input.

    swift build -c release -Xswiftc -Ounchecked -Xswiftc -target-cpu -Xswiftc native --product quarry
    pip install pillow onnxruntime onnx
    python3 bench/e2e_extract.py --out bench/out/e2e

Results are printed and written to OUT/results.json. The machine may be shared: read the ratios
of the same round, not the absolute figures.
"""

import argparse
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
MIXED_SIZES = [(500, 375), (640, 480), (800, 600), (1024, 768), (1600, 1200), (2048, 1536), (3000, 2250), (4000, 3000)]


# Images ------------------------------------------------------------------------------------------

def photo(w, h, seed):
    """A photo-like picture: smooth colour fields and blobs (made small, then resized), a few
    rectangles with hard edges, and noise at three scales, like texture and sensor noise."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    sw, sh = max(w // 8, 8), max(h // 8, 8)
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    field = np.zeros((sh, sw, 3), np.float32)
    for c in range(3):
        g = rng.uniform(40, 200) + rng.uniform(-60, 60) * x / sw + rng.uniform(-60, 60) * y / sh
        for _ in range(8):
            cx, cy, r = rng.uniform(0, sw), rng.uniform(0, sh), rng.uniform(0.05, 0.4) * max(sw, sh)
            g += rng.uniform(-70, 70) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        field[..., c] = g
    smooth = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    img = np.asarray(smooth, np.float32).copy()
    for _ in range(6):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        img[y0:y0 + h // 6, x0:x0 + w // 6] += rng.uniform(-50, 50, 3).astype(np.float32)
    for s, amp in ((1, 10.0), (3, 6.0), (9, 4.0)):
        n = rng.standard_normal((h // s + 2, w // s + 2, 1), dtype=np.float32)
        if s > 1:
            n = np.repeat(np.repeat(n, s, 0), s, 1)
        img += n[:h, :w] * amp
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_set(folder, sizes, count, seed):
    """`count` JPEGs cycling through `sizes` (every other one in portrait), written once."""
    os.makedirs(folder, exist_ok=True)
    names = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        if (i // len(sizes)) % 2 == 1:
            w, h = h, w
        name = os.path.join(folder, f"img{i:05d}_{w}x{h}.jpg")
        if not os.path.exists(name):
            photo(w, h, seed + i).save(name, quality=90)
        names.append(name)
    return names


# PIL + torchvision-equivalent transforms ---------------------------------------------------------

def pil_transform(path):
    """torchvision's Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize on a PIL image."""
    from PIL import Image
    with open(path, "rb") as f:
        data = f.read()
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    if w <= h:
        size = (256, int(256 * h / w))
    else:
        size = (int(256 * w / h), 256)
    im = im.resize(size, Image.BILINEAR)
    left = int(round((size[0] - 224) / 2.0))
    top = int(round((size[1] - 224) / 2.0))
    im = im.crop((left, top, left + 224, top + 224))
    a = np.asarray(im, dtype=np.float32) / np.float32(255)
    return ((a - MEAN) / STD).transpose(2, 0, 1).copy()


def pil_decode_worker(folder):
    """Run in a subprocess under taskset: images/s of PIL decode + transforms over the folder."""
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    pil_transform(files[0])  # warm the imports
    start, cpu = time.perf_counter(), time.process_time()
    for f in files:
        pil_transform(f)
    print(json.dumps({"items_per_s": len(files) / (time.perf_counter() - start),
                      "items_per_cpu_s": len(files) / (time.process_time() - cpu)}))


def ort_peer(folder, model, batch, threads):
    """Run in a subprocess: PIL + transforms in a Pool of `threads` processes feeding onnxruntime
    with `threads` intra-op threads; prints the wall time from start to the last feature."""
    start = time.perf_counter()
    import onnxruntime as ort
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outputs = []
    with multiprocessing.Pool(threads) as pool:
        rows = pool.imap(pil_transform, files, chunksize=2)
        buf = []
        for r in rows:
            buf.append(r)
            if len(buf) == batch:
                outputs.append(sess.run(None, {name: np.stack(buf)})[0])
                buf = []
        if buf:
            outputs.append(sess.run(None, {name: np.stack(buf)})[0])
    n = sum(o.shape[0] for o in outputs)
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": n}))


def torch_peer(folder, batch, workers):
    """Run in a subprocess: torchvision-style Dataset + DataLoader feeding resnet50 on CUDA."""
    start = time.perf_counter()
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms

    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize(MEAN.tolist(), STD.tolist())])

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return tf(Image.open(files[i]).convert("RGB"))

    model = torchvision.models.resnet50(weights=None).eval().cuda()
    model.fc = torch.nn.Identity()
    loader = torch.utils.data.DataLoader(Files(), batch_size=batch, num_workers=workers, pin_memory=True)
    n = 0
    with torch.inference_mode():
        for x in loader:
            y = model(x.cuda(non_blocking=True))
            n += y.shape[0]
        torch.cuda.synchronize()
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": n}))


def torch_cuda_available():
    try:
        r = subprocess.run([sys.executable, "-c", "import torch, torchvision; assert torch.cuda.is_available()"],
                           capture_output=True, timeout=120)
        return r.returncode == 0
    except Exception:
        return False


# Quarry ------------------------------------------------------------------------------------------

def quarry_items_per_s(stderr):
    """The rate on the last progress line ("N/N  X items/s"), which excludes the model build."""
    rates = re.findall(r"(\d+)/(\d+)\s+([0-9.]+) items/s", stderr)
    if not rates:
        raise RuntimeError("no progress line in quarry's output:\n" + stderr[-2000:])
    return float(rates[-1][2])


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def child_cpu_seconds():
    import resource
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def quarry_decode(quarry, folder, tmp, exact=False):
    """Images/s on one core, by wall time and by CPU time (user + sys), each from a run over the
    folder minus a run over its first image, which takes out the model build. (Quarry's own
    progress line starts after the model build, but the decode worker starts before it and has
    decoded the first batches by then, so that rate would overstate the decoding.)"""
    out = os.path.join(tmp, "decode.npy")
    one = os.path.join(tmp, "one-" + os.path.basename(folder))
    if not os.path.exists(one):
        os.makedirs(one)
        first = sorted(f for f in os.listdir(folder) if f.endswith(".jpg"))[0]
        os.symlink(os.path.join(os.path.abspath(folder), first), os.path.join(one, first))
    n = len([f for f in os.listdir(folder) if f.endswith(".jpg")])
    cpu, wall = [], []
    for source in (folder, one):
        cmd = ["taskset", "-c", "0", quarry, "extract", "resnet50", "--input", source, "--output", out,
               "--layer", "input", "--pool", "global_average", "--decode-workers", "1", "--device", "cpu",
               "--cpu-threads", "1", "--batch", "16"] + (["--exact-decode"] if exact else [])
        before = child_cpu_seconds()
        start = time.perf_counter()
        run(cmd)
        wall.append(time.perf_counter() - start)
        cpu.append(child_cpu_seconds() - before)
        os.remove(out)
    return (n - 1) / max(wall[0] - wall[1], 1e-9), (n - 1) / max(cpu[0] - cpu[1], 1e-9)


def pil_decode(folder):
    r = run(["taskset", "-c", "0", sys.executable, __file__, "--pil-decode-worker", folder])
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["items_per_s"], d["items_per_cpu_s"]


def quarry_e2e(quarry, folder, tmp, device, batch):
    out = os.path.join(tmp, "features.npy")
    start = time.perf_counter()
    r = run([quarry, "extract", "resnet50", "--input", folder, "--output", out, "--device", device, "--batch", str(batch)])
    seconds = time.perf_counter() - start
    rows = np.load(out).shape[0]
    os.remove(out)
    return seconds, rows, quarry_items_per_s(r.stderr)


def cosines(a, b):
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quarry", default=".build/release/quarry")
    ap.add_argument("--out", default="bench/out/e2e")
    ap.add_argument("--small", type=int, default=120, help="500x375 JPEGs for the decode timing")
    ap.add_argument("--large", type=int, default=12, help="4000x3000 JPEGs for the decode timing")
    ap.add_argument("--mixed", type=int, default=96, help="JPEGs of mixed sizes for the end-to-end timing")
    ap.add_argument("--devices", default="cpu", help="comma list of quarry devices to time end to end")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cosine-models", default="resnet18,resnet50,mobilenet_v2,densenet121,inception_v3,vgg16")
    ap.add_argument("--cosine-images", type=int, default=16)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: decode, e2e, cosine")
    ap.add_argument("--pil-decode-worker", help=argparse.SUPPRESS)
    ap.add_argument("--ort-worker", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--torch-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pil_decode_worker:
        return pil_decode_worker(args.pil_decode_worker)
    if args.ort_worker:
        f, m, b, t = args.ort_worker
        return ort_peer(f, m, int(b), int(t))
    if args.torch_worker:
        f, b, w = args.torch_worker
        return torch_peer(f, int(b), int(w))

    quarry = os.path.abspath(args.quarry)
    skip = set(filter(None, args.skip.split(",")))
    cores = os.cpu_count()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    print(f"CPU: {cpu}, {cores} cores; quarry: {quarry}")
    t0 = time.perf_counter()
    small = os.path.join(args.out, "small")
    large = os.path.join(args.out, "large")
    mixed = os.path.join(args.out, "mixed")
    make_set(small, [(500, 375)], args.small, 1000)
    make_set(large, [(4000, 3000)], args.large, 2000)
    make_set(mixed, MIXED_SIZES, args.mixed, 3000)
    print(f"images ready in {time.perf_counter() - t0:.0f} s")
    results = {"cpu": cpu, "cores": cores, "rounds": []}
    tmp = tempfile.mkdtemp(prefix="quarry-e2e-")

    peer_model = os.path.join(args.out, "peer", "resnet50.onnx")
    if "e2e" not in skip and not os.path.exists(peer_model):
        run([sys.executable, os.path.join(os.path.dirname(__file__), "make_peer_models.py"),
             "--out", os.path.dirname(peer_model), "--dynamic", "--models", "resnet50"])
    with_torch = "e2e" not in skip and torch_cuda_available()
    if "e2e" not in skip and not with_torch:
        print("torch with CUDA is not importable here: the DataLoader + PyTorch GPU peer is skipped")
    devices = [d for d in args.devices.split(",") if d]

    try:
        # One untimed pass of each side first: on the shared VMs this was measured on, the first
        # one-core run after the machine sat idle was the slowest of a run's rounds every time.
        if "decode" not in skip and args.rounds > 0:
            quarry_decode(quarry, small, tmp)
            pil_decode(small)
        for rnd in range(args.rounds):
            row = {}
            if "decode" not in skip:
                for label, folder in (("500x375", small), ("4000x3000", large)):
                    q, qc = quarry_decode(quarry, folder, tmp)
                    p, pc = pil_decode(folder)
                    row[f"decode {label}"] = {"quarry": q, "pil": p, "ratio": q / p,
                                              "quarry_per_cpu_s": qc, "pil_per_cpu_s": pc, "ratio_cpu": qc / pc}
                    print(f"round {rnd} decode+preprocess {label}, 1 core: wall quarry {q:.1f} img/s, PIL {p:.1f} img/s, {q / p:.2f}x;"
                          f" CPU time quarry {qc:.1f} img/s, PIL {pc:.1f} img/s, {qc / pc:.2f}x")
            if "e2e" not in skip:
                r = run([sys.executable, __file__, "--ort-worker", mixed, peer_model, str(args.batch), str(cores)])
                peer = json.loads(r.stdout.strip().splitlines()[-1])
                peer_rate = peer["rows"] / peer["seconds"]
                row["e2e PIL+onnxruntime"] = {"seconds": peer["seconds"], "items_per_s": peer_rate}
                print(f"round {rnd} e2e PIL pool({cores}) + onnxruntime({cores} threads): {peer['rows']} rows in {peer['seconds']:.1f} s, {peer_rate:.2f} img/s")
                if with_torch:
                    r = run([sys.executable, __file__, "--torch-worker", mixed, str(args.batch), str(cores)])
                    tp = json.loads(r.stdout.strip().splitlines()[-1])
                    row["e2e DataLoader+PyTorch CUDA"] = {"seconds": tp["seconds"], "items_per_s": tp["rows"] / tp["seconds"]}
                    print(f"round {rnd} e2e DataLoader({cores}) + PyTorch CUDA: {tp['rows']} rows in {tp['seconds']:.1f} s, {tp['rows'] / tp['seconds']:.2f} img/s")
                for d in devices:
                    s, rows, rate = quarry_e2e(quarry, mixed, tmp, d, args.batch)
                    row[f"e2e quarry {d}"] = {"seconds": s, "items_per_s": rows / s, "items_per_s_after_build": rate,
                                              "vs_onnxruntime": (rows / s) / peer_rate}
                    line = f"round {rnd} e2e quarry --device {d}: {rows} rows in {s:.1f} s, {rows / s:.2f} img/s ({rate:.2f} after the model build), {(rows / s) / peer_rate:.2f}x PIL+onnxruntime"
                    if with_torch:
                        torch_rate = row["e2e DataLoader+PyTorch CUDA"]["items_per_s"]
                        row[f"e2e quarry {d}"]["vs_pytorch_cuda"] = (rows / s) / torch_rate
                        line += f", {(rows / s) / torch_rate:.2f}x DataLoader+PyTorch"
                    print(line)
            results["rounds"].append(row)

        if "cosine" not in skip:
            # Two images of every size from the mixed set.
            picked = sorted(os.listdir(mixed))[: max(args.cosine_images, 1)]
            folder = os.path.join(tmp, "cosine")
            os.makedirs(folder)
            for f in picked:
                os.symlink(os.path.join(os.path.abspath(mixed), f), os.path.join(folder, f))
            sizes = [re.search(r"_(\d+x\d+)\.jpg", f).group(1) for f in picked]
            results["cosine"] = {}
            for model in ["input"] + args.cosine_models.split(","):
                name, extra = ("resnet50", ["--layer", "input"]) if model == "input" else (model, [])
                feats = []
                for exact in (False, True):
                    out = os.path.join(tmp, f"cos{int(exact)}.npy")
                    run([quarry, "extract", name, "--input", folder, "--output", out, "--quiet", "--batch", "8"]
                        + extra + (["--exact-decode"] if exact else []))
                    feats.append(np.load(out))
                c = cosines(feats[0], feats[1])
                a = feats[0].reshape(len(picked), -1).astype(np.float64)
                b = feats[1].reshape(len(picked), -1).astype(np.float64)
                between = np.median([np.linalg.norm(b[i] - b[j]) for i in range(len(b)) for j in range(len(b)) if i != j])
                rel = np.linalg.norm(a - b, axis=1) / between
                by_size = {}
                for s, v, r in zip(sizes, c, rel):
                    by_size.setdefault(s, []).append((float(v), float(r)))
                results["cosine"][model] = by_size
                order = sorted(by_size.items(), key=lambda kv: int(kv[0].split('x')[0]) * int(kv[0].split('x')[1]))
                summary = ", ".join(f"{s}: {1 - min(x[0] for x in v):.1e}/{max(x[1] for x in v):.3f}" for s, v in order)
                print(f"scaled vs exact decode, {model}, per size 1-cos (worst) / change relative to between-image distance (worst): {summary}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"written {os.path.join(args.out, 'results.json')}")


if __name__ == "__main__":
    main()
