#!/usr/bin/env python3
"""tokenizer_ref.py — an independent reference of the HF tokenizers byte-level BPE pipeline in
Python (the `regex` module for \\p{L}/\\p{N}, `unicodedata` for NFC, GPT-2's original
"merge the best-ranked pair everywhere" BPE loop), used by tests/test_tokenize_ref_slow.sh to
cross-check `ggx tokenize --jsonl` on texts the HF fixtures do not cover.

    tokenizer_ref.py TOKENIZER_JSON < lines.jsonl > ids.jsonl
    tokenizer_ref.py --gen SEED N > lines.jsonl     # N random texts (one JSON string a line)

Covers what the fixture tokenizers use: added tokens without lstrip/rstrip/single_word
(leftmost-longest split; non-normalized ones on the raw text, normalized ones after NFC), NFC,
ByteLevel with add_prefix_space / use_regex, BPE with ranked merges and ignore_merges.
"""
import json
import sys
import unicodedata

import regex

# \s spelled out as Unicode White_Space (Oniguruma's \s; Python's \s would add U+001C..U+001F)
WS = "\\t\\n\\x0b\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
PAT = regex.compile(
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + WS + "\\p{L}\\p{N}]+|[" + WS + "]+(?![^" + WS + "])|[" + WS + "]+"
)


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Ref:
    def __init__(self, path):
        tj = json.load(open(path, encoding="utf-8"))
        m = tj["model"]
        self.vocab = m["vocab"]
        self.ignore_merges = m.get("ignore_merges", False)
        self.ranks = {}
        rank = 0
        for e in m["merges"]:
            if isinstance(e, str):
                if e.startswith("#version"):
                    continue
                a, b = e.split(" ")
            else:
                a, b = e
            self.ranks[(a, b)] = rank
            rank += 1
        norm = tj.get("normalizer") or {}
        self.nfc = norm.get("type") == "NFC"
        pre = tj["pre_tokenizer"]
        self.add_prefix_space = pre.get("add_prefix_space", True)
        self.use_regex = pre.get("use_regex", True)
        self.raw = []
        self.norm = []
        for t in tj.get("added_tokens", []):
            assert not (t["lstrip"] or t["rstrip"] or t["single_word"]), "flags not covered by the reference"
            if t["normalized"]:
                c = unicodedata.normalize("NFC", t["content"]) if self.nfc else t["content"]
                self.norm.append((c, t["id"]))
            else:
                self.raw.append((t["content"], t["id"]))
        self.b2u = bytes_to_unicode()
        self.cache = {}

    @staticmethod
    def split_added(text, toks):
        out, i, start = [], 0, 0
        while toks and i < len(text):
            best = None
            for c, tid in toks:
                if text.startswith(c, i) and (best is None or len(c) > len(best[0])):
                    best = (c, tid)
            if best:
                if start < i:
                    out.append((None, text[start:i]))
                out.append((best[1], best[0]))
                i += len(best[0])
                start = i
            else:
                i += 1
        if start < len(text):
            out.append((None, text[start:]))
        return out

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        parts = list(word)
        while len(parts) > 1:
            best = min(((self.ranks.get((parts[i], parts[i + 1]), 1 << 60), i) for i in range(len(parts) - 1)))
            if best[0] == 1 << 60:
                break
            a, b = parts[best[1]], parts[best[1] + 1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.vocab[p] for p in parts if p in self.vocab]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        for tid, piece in self.split_added(text, self.raw):
            if tid is not None:
                ids.append(tid)
                continue
            if self.nfc:
                piece = unicodedata.normalize("NFC", piece)
            for tid2, p2 in self.split_added(piece, self.norm):
                if tid2 is not None:
                    ids.append(tid2)
                    continue
                if self.add_prefix_space and not p2.startswith(" "):
                    p2 = " " + p2
                words = PAT.findall(p2) if self.use_regex else [p2]
                for w in words:
                    ids += self.bpe("".join(self.b2u[b] for b in w.encode("utf-8")))
        return ids


def gen(seed, n):
    """Random texts: ASCII words, space runs, control and Unicode whitespace, digits and
    punctuation, contractions, added-token text, many scripts, combining marks, emoji sequences,
    any scalar value, characters NFC changes."""
    import random
    random.seed(seed)
    words = ["the", "Hello", " world", "I'm", "you're", "we've", "it's", "'ll", "don't", "ROMEO", "3.14", "1e-10",
             "http://x.y/z?q=1", "def f(x):", "caf\u00e9", "na\u00efve", "\u65e5\u672c\u8a9e", "\U0001F600",
             "x\u0307\u0323", "<|endoftext|>", "<|padding|>", "assistant", "RWKV", "<|im_start|>"]

    def piece():
        k = random.randrange(14)
        if k < 3:
            return "".join(random.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(random.randint(1, 8)))
        if k == 3:
            return " " * (random.randint(1, 3) if random.random() < 0.75 else random.randint(1, 40))
        if k == 4:
            return random.choice(["\n", "\r\n", "\t", "\n\n", " \n ", "\t\t", "\x1c", "\x1f", "\x0b", "\x0c"])
        if k == 5:
            return "".join(random.choice("0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for _ in range(random.randint(1, 6)))
        if k == 6:
            return random.choice(words)
        if k == 7:
            return "".join(chr(random.choice([0xC0, 0x100, 0x391, 0x410, 0x627, 0x900, 0xE00]) + random.randrange(60))
                           for _ in range(random.randint(1, 5)))
        if k == 8:
            return "".join(chr(random.choice([0x4E00, 0x3041, 0xAC00, 0x1100]) + random.randrange(0x60))
                           for _ in range(random.randint(1, 4)))
        if k == 9:
            return "".join(chr(0x300 + random.randrange(0x70)) for _ in range(random.randint(1, 3)))
        if k == 10:
            return chr(0x1F600 + random.randrange(0x50)) + random.choice(["", "\u200d", "\U0001F3FB", "\ufe0f"])
        if k == 11:
            return chr(random.choice([0xA0, 0x2009, 0x3000, 0x2028, 0x85, 0x180E, 0x200B, 0x1680, 0x2029, 0x202F, 0x205F, 0xFEFF]))
        if k == 12:
            while True:
                c = random.randrange(0x3000) if random.random() < 0.75 else random.randrange(0x110000)
                if not 0xD800 <= c <= 0xDFFF and c != 0:
                    return chr(c)
        return chr(random.choice([0xDF, 0x1E9E, 0xFB01, 0x2126, 0x212B, 0x1E0A, 0x958, 0xF900, 0x1D15E, 0x2160, 0xBD, 0x2074, 0xE33]))

    for i in range(n):
        print(json.dumps("".join(piece() for _ in range(random.randint(1, 40 if i % 10 else 400)))))


def main():
    if sys.argv[1] == "--gen":
        gen(int(sys.argv[2]), int(sys.argv[3]))
        return
    ref = Ref(sys.argv[1])
    for line in sys.stdin:
        print(json.dumps(ref.encode(json.loads(line)), separators=(",", ":")))


if __name__ == "__main__":
    main()
