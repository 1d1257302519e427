"""A small CNN on the 1,797 UCI handwritten digits (8x8), trained with Adam.

    python examples/digits_cnn.py            # or: python -m nnkern.examples.digits_cnn
    nnkern demo                               # runs this and the character LSTM

Reaches >= 97% test accuracy in well under a minute on 2 cores (about 3 s for 20 epochs).

Augmentation is off by default: on 8x8 images one pixel of shift is 12% of the digit, and the random
affine warps (`--augment`) cost ~1 point of test accuracy here (measured over seeds 0-3, 20-40 epochs).
It pays off on larger images; this example keeps it one flag away to show the API.
"""

import argparse
import time

import numpy as np

import nnkern as nk


def build_model(seed=0):
    nk.manual_seed(seed)
    return nk.nn.Sequential(
        nk.nn.Conv2d(1, 16, 3, padding=1), nk.nn.ReLU(),
        nk.nn.Conv2d(16, 32, 3, padding=1), nk.nn.ReLU(),
        nk.nn.MaxPool2d(2),
        nk.nn.Flatten(),
        nk.nn.Linear(32 * 4 * 4, 64), nk.nn.ReLU(),
        nk.nn.Dropout(0.25),
        nk.nn.Linear(64, 10),
    )


def augmenter():
    """Small random shifts and rotations (nnkern.augment); None if the module is unavailable."""
    try:
        from nnkern import augment
    except ImportError:
        return None
    return augment.RandomAffine(degrees=8, translate=(0.1, 0.1), scale=(0.92, 1.08))


def run(epochs=20, batch_size=32, lr=2e-3, seed=0, augment=False, progress=True, plot_path=None):
    """Trains and evaluates the CNN; returns a dict with the test accuracy, history and timing."""
    x, y = nk.datasets.load_digits()
    x_train, x_test, y_train, y_test = nk.datasets.train_test_split(
        x, y, test_fraction=0.25, rng=np.random.default_rng(seed), stratify=y)
    model = build_model(seed)
    opt = nk.optim.Adam(model.parameters(), lr=lr)
    sched = nk.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    t0 = time.perf_counter()
    hist = nk.train.fit(model, nk.nn.CrossEntropyLoss(), opt, (x_train, y_train), epochs=epochs,
                        val_data=(x_test, y_test), batch_size=batch_size, scheduler=sched,
                        transform=augmenter() if augment else None, rng=np.random.default_rng(seed),
                        progress=progress)
    seconds = time.perf_counter() - t0
    _, test_acc = nk.train.evaluate(model, nk.nn.CrossEntropyLoss(), (x_test, y_test))
    if plot_path:
        try:
            nk.train.plot_history(hist, plot_path, title="digits CNN")
        except ImportError:
            plot_path = None
    return {"test_accuracy": test_acc, "history": hist, "seconds": seconds, "model": model,
            "plot": plot_path, "n_train": len(x_train), "n_test": len(x_test)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", action="store_true", help="random affine warps (nnkern.augment)")
    p.add_argument("--plot", default=None, help="save training curves to this PNG (needs matplotlib)")
    a = p.parse_args(argv)
    res = run(a.epochs, a.batch_size, a.lr, a.seed, a.augment, True, a.plot)
    print(f"test accuracy {res['test_accuracy']:.4f} on {res['n_test']} held-out digits "
          f"({res['seconds']:.1f} s, {nk.get_num_threads()} threads)")
    return res


if __name__ == "__main__":
    main()
