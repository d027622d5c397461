#!/usr/bin/env python3
"""PyTorch on the same GPU, the peer of bench/gpu_check.sh: the three models of the GPU check in
fp32 with TF32 off, with TF32 on, and in bf16 autocast, timed with CUDA events.

    python3 bench/peer_pytorch_gpu.py [--seconds 3] [--json]

Models and shapes are Quarry's: ResNet-50 at batch 32 (3x224x224), MobileNetV2 at batch 64, BERT-base
at batch 32 x 128 tokens (the encoder with its pooler). torchvision's ResNet-50 and MobileNetV2 are
used where torchvision imports; otherwise the same layers are built here, so the FLOPs match either
way. BERT-base is transformers' BertModel where transformers imports, else an encoder of
nn.TransformerEncoderLayer with BERT-base's sizes (12 layers, 768 wide, 12 heads, 3072 FFN, GELU,
post-norm). Weights are random: speed does not depend on them. Prints one line a model and mode;
with --json the last line is one JSON object {"device": ..., "torch": ..., "results": [...]}.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn as nn


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(conv_bn(cin, width, 1, act=nn.ReLU(True)), conv_bn(width, width, 3, stride, act=nn.ReLU(True)),
                                  conv_bn(width, cout, 1))
        self.down = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


def resnet50() -> nn.Module:
    try:
        import torchvision
        return torchvision.models.resnet50()
    except ImportError:
        layers: list[nn.Module] = [conv_bn(3, 64, 7, 2, act=nn.ReLU(True)), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
        return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, act=nn.ReLU6(True)))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6(True)), conv_bn(hidden, cout, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2() -> nn.Module:
    try:
        import torchvision
        return torchvision.models.mobilenet_v2()
    except ImportError:
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6(True))]
        cin = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [conv_bn(320, 1280, 1, act=nn.ReLU6(True)), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
        return nn.Sequential(*layers)


class Encoder(nn.Module):
    """BERT-base's encoder and pooler where transformers is missing."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30522, 768)
        self.position = nn.Embedding(512, 768)
        self.norm = nn.LayerNorm(768)
        layer = nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, activation="gelu", batch_first=True)
        self.layers = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
        self.pooler = nn.Linear(768, 768)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(ids) + self.position(torch.arange(ids.shape[1], device=ids.device)))
        x = self.layers(x, src_key_padding_mask=mask == 0)
        return torch.tanh(self.pooler(x[:, 0]))


def bert_base() -> nn.Module:
    try:
        from transformers import BertConfig, BertModel
        return BertModel(BertConfig())
    except ImportError:
        return Encoder()


def time_model(model: nn.Module, feeds: tuple, mode: str, seconds: float) -> tuple[float, float]:
    """Median ms a batch and the number of runs, after warm-up, under the precision mode."""
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16")
    times: list[float] = []
    with torch.inference_mode(), autocast:
        for _ in range(3):
            model(*feeds)
        torch.cuda.synchronize()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(*feeds)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], len(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--modes", nargs="+", default=["fp32", "tf32", "bf16"])
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("peer_pytorch_gpu.py: PyTorch sees no CUDA device")
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    ids = torch.randint(0, 30522, (32, 128), device=dev)
    cases = [
        ("resnet50", 32, resnet50, (torch.randn(32, 3, 224, 224, device=dev),)),
        ("mobilenet_v2", 64, mobilenet_v2, (torch.randn(64, 3, 224, 224, device=dev),)),
        ("bert_base", 32, bert_base, (ids, torch.ones_like(ids))),
    ]
    results = []
    for name, batch, build, feeds in cases:
        model = build().to(dev).eval()
        for mode in a.modes:
            ms, runs = time_model(model, feeds, mode, a.seconds)
            row = {"model": name, "batch": batch, "mode": mode, "median_ms": ms, "items_per_second": batch * 1e3 / ms, "runs": runs}
            results.append(row)
            print(f"pytorch {name:13s} b{batch:<3d} {mode:5s} {row['items_per_second']:10.1f} items/s  median {ms:8.3f} ms", flush=True)
        del model
        torch.cuda.empty_cache()
    if a.json:
        print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
