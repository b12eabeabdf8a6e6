"""Build a BERT encoder with random weights and a WordPiece vocabulary made from a text.

Usage: python scripts/make_encoder.py DEST [--size tiny|base] [--text FILE ...]

For tests (`tiny`: 2 layers, 32 wide) and for speed figures on machines without a
model hub (`base`: the shape of bert-base / roberta-base, 12 layers, 768 wide; its
cost per word is that of the real model, its accuracy is nil). The folder loads with
`from_pretrained(DEST)` and as `[components.ntk_ner.model.tok2vec] name = "DEST"`.
"""

import argparse
from pathlib import Path
from typing import Iterable, List

SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
}


def make_random_encoder(dest: Path, texts: Iterable[str], size: str = "tiny") -> Path:
    """Write a randomly initialized BERT and its tokenizer into `dest`.

    dest (Path): The folder to create.
    texts (Iterable[str]): Text whose words and characters make the vocabulary.
    size (str): "tiny" or "base".
    RETURNS (Path): `dest`.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in texts for w in t.split()})
    chars = sorted({c for w in words for c in w})
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = list(dict.fromkeys(special + chars + [f"##{c}" for c in chars] + words))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vocab.txt").write_text("\n".join(vocab) + "\n", "utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(dest / "vocab.txt"), do_lower_case=False)
    tokenizer.save_pretrained(str(dest))
    config = BertConfig(vocab_size=len(vocab), max_position_embeddings=512, **SIZES[size])
    BertModel(config).save_pretrained(str(dest))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--text", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    texts: List[str] = []
    for path in args.text:
        # BIO files: the first column of each line is a token.
        texts.extend(line.split("\t")[0] for line in path.read_text("utf8").splitlines())
    make_random_encoder(args.dest, texts or ["the a of"], args.size)
    print(args.dest)


if __name__ == "__main__":
    main()
