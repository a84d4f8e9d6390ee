"""Opacus side of ``bench_dp.py``: run in a separate venv with torch and opacus.

Times one non-private SGD step and one Opacus DP-SGD step (``PrivacyEngine.make_private``
with its default hooks; Poisson sampling off so that the batch is the same 256 examples) for the
same three
architectures, and prints one JSON line ``{model: {"plain": s, "private": s}}``.
The data are random tensors of MNIST's shape: the cost of a step does not depend on the
pixel values, and this keeps the torch venv free of jaxreform.
"""

import argparse
import json
import statistics
import time

import torch
from opacus import PrivacyEngine
from torch import nn


def architectures():
    return {
        "softmax": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
        "mlp_784_1000_10": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(),
                                                 nn.Linear(1000, 10)),
        "cnn_32_64": lambda: nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)),
    }


def median_seconds(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--data-dir", default="")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = nn.CrossEntropyLoss()
    out = {}
    for name, make in architectures().items():
        model = make()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def plain():
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                             batch_size=args.batch)
        fresh = make()
        private_model, private_opt, _ = PrivacyEngine().make_private(
            module=fresh, optimizer=torch.optim.SGD(fresh.parameters(), lr=0.1),
            data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0,
            poisson_sampling=False)

        def private():
            private_opt.zero_grad()
            loss_fn(private_model(x), y).backward()
            private_opt.step()

        out[name] = {"plain": median_seconds(plain), "private": median_seconds(private)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
