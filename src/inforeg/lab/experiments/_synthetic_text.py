"""Character-level documents from a known stochastic grammar, with the exact loss floor per character.

Each document starts with a header of three random names (an upper-case initial, distinct within
the document, then three random lower-case letters) and a colon, followed by a body of tokens from
a first-order Markov chain over 24 words, a ``NAME`` slot and a full stop; tokens are separated by
single spaces. A ``NAME`` slot repeats one of the header's names, chosen uniformly, so predicting
the rest of a name needs a look-up of the header up to a whole context back (the long-range part);
the words need the previous word (the local part).

The generator is unifilar: its state (which token is being written and how far, which names the
header holds) is a function of the characters already written, because every word starts with its
own letter and the names' initials differ. So the probability it samples each character from is
the true conditional probability of that character given all the earlier ones, and
``-log p`` of the characters of a document is the loss of the Bayes-optimal next-character
predictor with the whole document as context: the irreducible loss, known exactly per character.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

WORDS = (
    "after bright cold dark every far green house in just king long more night over place quiet "
    "river small tree under very water young"
).split()
NAME, STOP = len(WORDS), len(WORDS) + 1  # token types besides the words
N_TYPES = len(WORDS) + 2
N_NAMES, NAME_TAIL = 3, 3  # names in the header; lower-case letters after a name's initial
ALPHABET = " .:" + string.ascii_lowercase + string.ascii_uppercase
VOCAB = len(ALPHABET)
_CODE = {c: i for i, c in enumerate(ALPHABET)}
_LOWER = [_CODE[c] for c in string.ascii_lowercase]
_UPPER = [_CODE[c] for c in string.ascii_uppercase]
assert len({w[0] for w in WORDS}) == len(WORDS)  # distinct initials: the parse is unambiguous


@dataclass(frozen=True)
class Grammar:
    """Successors of each token type and their probabilities (rows of a sparse Markov chain)."""

    successors: np.ndarray  # (N_TYPES, k) token types
    probs: np.ndarray  # (N_TYPES, k), rows sum to 1


def make_grammar(seed: int = 0, n_words: int = 3) -> Grammar:
    """Every token type is followed by ``n_words`` distinct random words, a name or a full stop,
    with Dirichlet(1) probabilities (fixed by ``seed``: one grammar, "the language")."""
    rng = np.random.default_rng(seed)
    succ = np.stack(
        [
            np.concatenate([rng.choice(len(WORDS), n_words, replace=False), [NAME, STOP]])
            for _ in range(N_TYPES)
        ]
    )
    return Grammar(succ, rng.dirichlet(np.ones(n_words + 2), size=N_TYPES))


def entropy_rate_bounds(grammar: Grammar) -> tuple[float, float]:
    """(min, max) over token types of the entropy (nats) of the next token type: a check that the
    chain is neither deterministic nor uniform."""
    p = grammar.probs
    h = -(p * np.log(p)).sum(1)
    return float(h.min()), float(h.max())


def sample_documents(
    n: int, length: int, seed: int, grammar: Grammar | None = None
) -> tuple[Tensor, Tensor]:
    """``n`` documents of ``length`` characters: ``(codes, nll)``, both of shape (n, length).

    ``codes`` are indices into :data:`ALPHABET`; ``nll[d, t] = -log p(x_t | x_<t)`` under the
    generator (0 for characters the grammar fixes, e.g. the rest of a word or a space). The mean of
    ``nll[:, 1:]`` is the irreducible loss of predicting characters 1..length-1 from their prefix.

    >>> codes, nll = sample_documents(2, 40, seed=0)
    >>> "".join(ALPHABET[i] for i in codes[0].tolist())[:29]
    'Pbba Nevq Uxnp : Nevq . . ove'
    >>> round(float(nll[0, 1]), 4) == round(math.log(26), 4)  # a random lower-case letter
    True
    """
    g = grammar if grammar is not None else make_grammar()
    rng = np.random.default_rng(seed)
    codes = np.zeros((n, length), dtype=np.int64)
    nll = np.zeros((n, length), dtype=np.float64)
    log26 = math.log(26)
    cum = np.cumsum(g.probs, axis=1)
    last = g.probs.shape[1] - 1
    for d in range(n):
        out_c: list[int] = []
        out_l: list[float] = []
        initials = rng.choice(26, N_NAMES, replace=False)
        names = []
        for k, ini in enumerate(initials):
            tail = rng.integers(0, 26, NAME_TAIL)
            names.append([_UPPER[ini], *(_LOWER[t] for t in tail)])
            out_c += names[-1] + [0]
            out_l += [math.log(26 - k), *([log26] * NAME_TAIL), 0.0]
        out_c += [_CODE[":"], 0]
        out_l += [0.0, 0.0]
        prev = STOP
        while len(out_c) < length:
            j = min(int(np.searchsorted(cum[prev], rng.random(), side="right")), last)
            tok, p = int(g.successors[prev, j]), float(g.probs[prev, j])
            if tok == NAME:
                word = names[rng.integers(0, N_NAMES)]
                p /= N_NAMES
            elif tok == STOP:
                word = [_CODE["."]]
            else:
                word = [_CODE[c] for c in WORDS[tok]]
            out_c += [*word, 0]
            out_l += [-math.log(p), *([0.0] * len(word))]
            prev = tok
        codes[d] = out_c[:length]
        nll[d] = out_l[:length]
    return torch.from_numpy(codes), torch.from_numpy(nll)


def conditional_nll(text: str, grammar: Grammar | None = None) -> list[float]:
    """``-log p(x_t | x_<t)`` of every character of one document, by parsing the text (an
    independent re-derivation of :func:`sample_documents`'s ``nll``, used by the tests)."""
    g = grammar if grammar is not None else make_grammar()
    tokens = text.split(" ")
    out: list[float] = []
    seen_initials: list[str] = []
    prev = STOP
    for i, tok in enumerate(tokens):
        if not tok:
            continue
        if i < N_NAMES:
            out.append(math.log(26 - len(seen_initials)))
            seen_initials.append(tok[0])
            out += [math.log(26)] * (len(tok) - 1)
        elif i == N_NAMES:
            out.append(0.0)
        else:
            if tok[0].isupper():
                t, extra = NAME, math.log(N_NAMES)
            elif tok[0] == ".":
                t, extra = STOP, 0.0
            else:
                t, extra = next(k for k, w in enumerate(WORDS) if w[0] == tok[0]), 0.0
            j = list(g.successors[prev]).index(t)
            out.append(-math.log(g.probs[prev, j]) + extra)
            out += [0.0] * (len(tok) - 1)
            prev = t
        out.append(0.0)  # the space after the token
    return out[: len(text)]
