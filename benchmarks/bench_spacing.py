"""How many entities keep their exact boundaries when the converter's reconstructed
text is tokenized again by spaCy.

Usage: python benchmarks/bench_spacing.py WIKISER_DEV_TXT [--plain-spaces]

Converts the file with `read_bio` (one Doc per sentence), tokenizes each Doc's text with
`spacy.blank("en")`, and counts the gold entities whose character span still falls on
token boundaries (`Doc.char_span` is not None): these are the entities that `spacy
train` can align to its own tokenization. Prints the share, and the first misses.
"""

import argparse
import json
from pathlib import Path
from typing import List

import spacy

from spacy_ntk_ner.corpus.options import ReadOptions
from spacy_ntk_ner.corpus.readers import read_bio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--plain-spaces", action="store_true")
    args = parser.parse_args()
    nlp = spacy.blank("en")
    kept = total = 0
    misses: List[str] = []
    for doc in read_bio(args.path, nlp.vocab, ReadOptions(plain_spaces=args.plain_spaces)):
        retok = nlp.make_doc(doc.text)
        for ent in doc.ents:
            total += 1
            if retok.char_span(ent.start_char, ent.end_char) is not None:
                kept += 1
            elif len(misses) < 10:
                misses.append(doc.text[max(0, ent.start_char - 15) : ent.end_char + 15])
    print(
        json.dumps(
            {"entities": total, "kept": kept, "share": kept / total, "misses": misses},
            indent=2,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
