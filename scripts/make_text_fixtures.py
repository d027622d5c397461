#!/usr/bin/env python3
"""Builds the text fixtures: small tokenizers trained with Hugging Face `tokenizers`, the ids that
`tokenizers` gives on a test corpus, and a small BERT checkpoint folder with random weights.

    pip install tokenizers numpy safetensors
    python3 scripts/make_text_fixtures.py        # writes Tests/Fixtures/text/

What it writes (all committed; the Swift tests need no Python):
  wordpiece_uncased/  vocab.txt, tokenizer.json, tokenizer_config.json: a WordPiece vocabulary
                      trained on the corpus, lower-casing and stripping accents (BERT uncased);
  wordpiece_cased/    the same trained without lower-casing or accent stripping (BERT cased);
  bpe/                vocab.json, merges.txt, tokenizer.json: a byte-level BPE trained as GPT-2's;
  cases.json          {"texts": [...], "<tokenizer>": [[ids] per text], "<tokenizer>_max16": [...]}:
                      ids from each tokenizer.json as `tokenizers` encodes them, whole and truncated
                      to 16 tokens (special tokens included);
  tiny_bert/          config.json, model.safetensors, vocab.txt, tokenizer.json, tokenizer_config.json:
                      a 2-layer BERT (hidden 32, 4 heads, inner 64) with random weights over the
                      uncased vocabulary, saved as an old transformers version did (with the
                      `embeddings.position_ids` buffer), for the embedding tests' float64 reference.

The training text is the test corpus plus the license texts in /usr/share/common-licenses (plain
English prose, present on Debian); only what is trained from it is committed.
"""
import glob, json, os, random, shutil
import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers, decoders

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "text")
rnd = random.Random(20261204)


def corpus():
    """Sentences with accents, CJK, emoji, punctuation runs, long words, empty lines, controls."""
    texts = [
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "",
        "Café déjà vu: naïve façade, Ångström, Øresund, São Paulo, Kraków, İstanbul.",
        "ÉCOLE ÉLÉMENTAIRE — Über straße, GROSS, ǅemal, ΣΊΣΥΦΟΣ, Ελληνικά.",
        "我爱北京天安门。東京は日本の首都です。한국어 문장입니다.",
        "Emoji: 😀😃 👍🏽 👨‍👩‍👧‍👦 ❤️ 🇫🇷 and 🥰 plus ☃.",
        "Punctuation runs!!! ??? ... --- ((([[[{{{}}}]]]))) $$$ ^^^ ~~~ `backticks` \"quotes\" 'single'",
        "A" * 99 + " " + "b" * 100 + " " + "c" * 101 + " " + "antidisestablishmentarianism" * 5,
        "   leading and trailing spaces   ",
        "tabs\tand\nnewlines\r\nand\u000bvertical\u000cfeeds",
        "control\u0000chars\u0007dropped\u200bzero\u200dwidth\ufeffbom\ufffdreplacement",
        "numbers 3.14159 1,000,000 2026-12-04 ½ ² ٣ ⅷ",
        "it's they're we've I'm you'll he'd 'quoted' don't",
        "[CLS] literal special tokens [SEP] and [MASK] and <|endoftext|> too",
        "mixed: naïveTÉ ﬁnance ﬀ Ｆｕｌｌｗｉｄｔｈ ｶﾀｶﾅ",
        "e\u0301 combining acute, a\u0308 combining diaeresis, \u0301 lone mark",
        "Private use \ue000 and unassigned \U000e0080 and surrogates are not valid UTF-8",
        "\u2028line separator\u2029paragraph separator\u00a0nbsp\u3000ideographic space",
        "शब्द हिन्दी, العربية, עברית, ไทย",
        "!",
        " ",
        "\t",
        "x",
    ]
    # Random texts from a mix of alphabets, so rarer paths are exercised beyond the fixed lines.
    alphabets = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿĀāĂăĄąĆćČčĎďĒēĘęĚěĞğĪīİıŁłŃńŇňŌōŐőŒœŘřŚśŞşŠšŢţŤťŪūŮůŰűŸŹźŻżŽž",
        "的一是不了人我在有他这中大来上个国到说们为子和你地出会也时要就可以对生能而那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实",
        "ぁあぃいぅうぇえぉおかがきぎくぐけげこごさざしじすずせぜそぞただちぢっつづてでとどなにぬねのはばぱひびぴふぶぷへべぺほぼぽ",
        "😀😁😂🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚☺🙂🤗🤩🤔🤨😐😑😶🙄😏😣😥😮🤐😯😪😫😴😌😛😜😝🤤😒😓😔😕🙃🤑😲",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»—–…‘’“”•·",
        "0123456789",
        "      \t\n",
    ]
    for _ in range(120):
        n = rnd.randint(0, 80)
        text = "".join(rnd.choice(rnd.choice(alphabets)) for _ in range(n))
        texts.append(text)
    return texts


def english():
    parts = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="ignore") as f:
                parts.append(f.read())
    return "\n".join(parts)


def train_wordpiece(texts, lowercase):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=1500, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                        continuing_subword_prefix="##")
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return tok


def save_wordpiece(tok, folder, lowercase):
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    vocab = tok.get_vocab()
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
            f.write(token + "\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": lowercase, "strip_accents": None, "tokenize_chinese_chars": True,
                   "unk_token": "[UNK]", "tokenizer_class": "BertTokenizer"}, f, indent=1)


def train_bpe(texts, folder):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    tok.model.save(folder)  # vocab.json + merges.txt
    return tok


def tiny_bert(folder, vocab_folder):
    os.makedirs(folder, exist_ok=True)
    for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(vocab_folder, name), os.path.join(folder, name))
    vocab = sum(1 for _ in open(os.path.join(folder, "vocab.txt"), encoding="utf-8"))
    d, layers, heads, inner, positions = 32, 2, 4, 64, 40
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": d, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": inner, "vocab_size": vocab,
              "max_position_embeddings": positions, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
              "hidden_act": "gelu", "pad_token_id": 0, "transformers_version": "4.8.2"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    g = np.random.default_rng(7)

    def w(*shape, scale=0.2):
        return (g.standard_normal(shape) * scale).astype(np.float32)

    t = {"embeddings.word_embeddings.weight": w(vocab, d, scale=0.5),
         "embeddings.position_embeddings.weight": w(positions, d, scale=0.5),
         "embeddings.token_type_embeddings.weight": w(2, d, scale=0.5),
         "embeddings.LayerNorm.weight": 1 + w(d), "embeddings.LayerNorm.bias": w(d),
         # A buffer, not a parameter: transformers before 4.31 saved it in every checkpoint.
         "embeddings.position_ids": np.arange(positions, dtype=np.int64)[None, :],
         "pooler.dense.weight": w(d, d), "pooler.dense.bias": w(d)}
    for l in range(layers):
        p = f"encoder.layer.{l}."
        for name, (o, i) in {"attention.self.query": (d, d), "attention.self.key": (d, d),
                             "attention.self.value": (d, d), "attention.output.dense": (d, d),
                             "intermediate.dense": (inner, d), "output.dense": (d, inner)}.items():
            t[p + name + ".weight"] = w(o, i)
            t[p + name + ".bias"] = w(o)
        for name in ["attention.output.LayerNorm", "output.LayerNorm"]:
            t[p + name + ".weight"] = 1 + w(d)
            t[p + name + ".bias"] = w(d)
    save_file(t, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = corpus()
    training = texts + english().split("\n")
    cases = {"texts": texts}
    for name, lowercase in [("wordpiece_uncased", True), ("wordpiece_cased", False)]:
        folder = os.path.join(OUT, name)
        save_wordpiece(train_wordpiece(training, lowercase), folder, lowercase)
    train_bpe(training, os.path.join(OUT, "bpe"))
    for name in ["wordpiece_uncased", "wordpiece_cased", "bpe"]:
        tok = Tokenizer.from_file(os.path.join(OUT, name, "tokenizer.json"))
        cases[name] = [e.ids for e in tok.encode_batch(texts)]
        tok.enable_truncation(16)
        cases[name + "_max16"] = [e.ids for e in tok.encode_batch(texts)]
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=True)
    tiny_bert(os.path.join(OUT, "tiny_bert"), os.path.join(OUT, "wordpiece_uncased"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
