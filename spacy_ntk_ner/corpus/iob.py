"""spaCy's `ENT_IOB` codes, shared by the BIO reader, the DocBin writer and the CRF.

A module of its own, with no imports, so that the CRF (imported at every `spacy.load`)
does not import the BIO reader for four constants.
"""

# 0 missing, 1 inside, 2 outside, 3 begin: `Token.ent_iob`'s values.
IOB_MISSING = 0
IOB_I = 1
IOB_O = 2
IOB_B = 3
