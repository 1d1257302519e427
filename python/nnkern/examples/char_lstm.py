"""A character-level LSTM language model trained with truncated BPTT, gradient clipping and Adam,
then sampled with a temperature.

    python examples/char_lstm.py                                  # bundled Shakespeare excerpt
    python examples/char_lstm.py --text ../shared/data/tinyshakespeare.txt --epochs 3
"""

import argparse
import time

import numpy as np

import nnkern as nk


class CharLSTM(nk.nn.Module):
    """Embedding -> LSTM -> Linear over the vocabulary. forward(x (T, B) ids, state) -> (logits, state)."""

    def __init__(self, vocab_size, embed_dim=48, hidden_size=256, num_layers=1):
        super().__init__()
        self.embed = nk.nn.Embedding(vocab_size, embed_dim)
        self.lstm = nk.nn.LSTM(embed_dim, hidden_size, num_layers=num_layers)
        self.head = nk.nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state

    def backward(self, dlogits):
        self.embed.backward(self.lstm.backward(self.head.backward(dlogits)))


class Vocab:
    def __init__(self, text):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text):
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


def sample(model, vocab, prime="\n", length=300, temperature=0.8, rng=None):
    """Generates text one character at a time, carrying the LSTM state."""
    rng = rng if rng is not None else np.random.default_rng(0)
    model.eval()
    try:
        state = None
        ids = vocab.encode(prime)
        logits, state = model(ids.reshape(-1, 1), state)
        out = []
        last = logits[-1, 0].astype(np.float64)
        for _ in range(length):
            z = last / max(temperature, 1e-6)
            p = np.exp(z - z.max())
            p /= p.sum()
            nxt = int(rng.choice(len(p), p=p))
            out.append(nxt)
            logits, state = model(np.array([[nxt]], dtype=np.int64), state)
            last = logits[-1, 0].astype(np.float64)
    finally:
        model.train()
    return prime + vocab.decode(out)


def run(text=None, epochs=2, seq_len=64, batch_size=32, hidden_size=256, lr=3e-3, clip=5.0, seed=0,
        max_steps=None, sample_length=300, temperature=0.8, progress=True):
    text = nk.datasets.load_text(text)
    vocab = Vocab(text)
    ids = vocab.encode(text)
    split = int(len(ids) * 0.95)
    nk.manual_seed(seed)
    model = CharLSTM(len(vocab.chars), hidden_size=hidden_size)
    opt = nk.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    hist = nk.train.fit_sequence(model, nk.nn.CrossEntropyLoss(), opt, ids[:split], epochs=epochs,
                                 seq_len=seq_len, batch_size=batch_size, clip_grad_norm=clip,
                                 val_ids=ids[split:], progress=progress, max_steps=max_steps)
    seconds = time.perf_counter() - t0
    generated = sample(model, vocab, prime="ROMEO:\n", length=sample_length, temperature=temperature,
                       rng=np.random.default_rng(seed))
    return {"history": hist, "sample": generated, "seconds": seconds, "vocab_size": len(vocab.chars),
            "val_loss": hist["val_loss"][-1], "model": model}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", default=None, help="text file to train on (default: bundled excerpt)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    res = run(a.text, a.epochs, a.seq_len, a.batch_size, a.hidden, a.lr, seed=a.seed, temperature=a.temperature)
    print(f"validation loss {res['val_loss']:.3f} nats/char ({res['seconds']:.1f} s)")
    print(res["sample"])
    return res


if __name__ == "__main__":
    main()
