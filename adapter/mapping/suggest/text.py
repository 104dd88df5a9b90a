"""One spelling of a lab name, so that names can be compared at all.

Sites write the same name many ways: ``ALT（血清）`` typed with a Chinese
input method, ``Bilirubin.total`` in a LOINC long name, ``T-BIL`` in an
export that upper-cases everything, ``Haemoglobin`` in a British feed, a
Greek capital alpha in place of a Latin ``A``.  :func:`read` folds all of
that away and gives two token sequences:

``full``
    every word of the name, for the words that disqualify a concept
    ("direct" bilirubin, "urine" creatinine): those must be seen even when
    they are words that otherwise carry no meaning;
``content``
    the words that can name an analyte: specimen words (serum, plasma,
    血清), LOINC's property words ([Mass/volume]), method words (酶法) and
    connectives dropped, so ``Creatinine [Mass/volume] in Serum or Plasma``
    and ``血清肌酐`` both come down to the analyte's name.

Tokens are runs of ASCII letters and digits (``spo2``, ``hba1c``), runs of
other letters (a CJK name has no spaces, so ``丙氨酸氨基转移酶`` is one token
and is matched by substring), ``%``, which marks a percentage, and ``#``, which marks a count (kept in
``full`` so that ``Platelets [#/volume]`` never reads as "platelet volume").
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

#: Greek and Cyrillic letters that look like Latin ones (a copied ``Α`` in
#: ``ΑLT``), the micro sign's Greek mu, and the Greek letters labs spell in
#: names (``γ-GT``), written out so they become tokens of their own.
_LOOKALIKES = str.maketrans(
    {
        **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧοικνρ", "ABEZHIKMNOPTYXoikvp", strict=True)),
        **dict(zip("АВЕКМНОРСТХаеорсхуі", "ABEKMHOPCTXaeopcxyi", strict=True)),
        "μ": "u",
        "α": " alpha ",
        "β": " beta ",
        "γ": " gamma ",
        "δ": " delta ",
    }
)
_LIGATURES = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o"}

#: British and other spellings folded onto one (haemoglobin, leucocyte,
#: dyspnoea, mobilisation).  Applied to ASCII tokens only.
_SPELLINGS = (("haem", "hem"), ("aemia", "emia"), ("leuco", "leuko"), ("oea", "ea"), ("isation", "ization"))
#: Words written two ways in lab names: ``O2 sat`` is ``oxygen saturation``.
_WORD_SPELLINGS = {"o2": "oxygen"}

#: Words that never name an analyte: specimens, LOINC property and method
#: words (and their LOINC short-name abbreviations: SerPl, Qn, mCnc),
#: connectives.  Dropped from ``content`` only.
_FILLER_WORDS = frozenset(
    """
    serum plasma ser plas sera blood bld whole specimen sample
    in or of by and the on for with from
    mass volume moles mole enzymatic activity catalytic arbitrary concentration number
    count counted automated automatic manual level value result test assay measurement
    ifcc jaffe kinetic poc
    serpl qn cnc ccnc mcnc scnc ncnc acnc
    """.split()
)
#: Whole CJK tokens that never name an analyte (method and specimen words,
#: 急诊 = emergency, 床旁 = point of care).
_FILLER_CJK_TOKENS = frozenset(
    """
    血清 血浆 全血 静脉血 酶法 速率法 苦味酸法 比色法 肌氨酸氧化酶法 干化学 化学发光
    急诊 床旁 测定 检测 结果 值 定量
    """.split()
)
#: The same words when glued to a CJK name (血清肌酐, 白细胞计数, 急诊肌酐).
_FILLER_CJK_PREFIXES = ("血清", "血浆", "全血", "急诊")
_FILLER_CJK_SUFFIXES = ("测定", "检测", "计数", "水平", "定量")

#: CJK ideographs (and their compatibility forms): a run of them is one token.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[%#]|[^\W_]+")
_COUNT_MARK = "#"


@dataclass(frozen=True, slots=True)
class Text:
    """A name read once: all its tokens, and the tokens that can name an analyte."""

    full: tuple[str, ...]
    content: tuple[str, ...]

    @property
    def full_line(self) -> str:
        """Every token, one space between each: what disqualifying words are looked for in."""
        return " ".join(self.full)

    @property
    def content_line(self) -> str:
        """The content tokens, one space between each: what names are looked for in."""
        return " ".join(self.content)


def _fold_character(char: str) -> str:
    """A Latin letter with its accent dropped (é -> e); anything else as it is."""
    if char in _LIGATURES:
        return _LIGATURES[char]
    if char.isascii():
        return char
    base = unicodedata.normalize("NFD", char)[0]
    return base if base.isascii() and base.isalpha() else char


def _is_ascii_word(token: str) -> bool:
    return token.isascii() and token.isalnum()


def _tokens(word: str) -> list[str]:
    """One run of letters and digits as tokens, lookalike letters made Latin where that makes it Latin.

    A Cyrillic or Greek word stays as it is (``Лейкоциты``); only a word that
    becomes plain ASCII with its lookalikes replaced (``ΑLT`` with a Greek
    capital alpha, ``γGT``) is taken as the Latin word it was meant to be.
    """
    if _CJK.match(word):
        return [word]
    latin = word if word.isascii() else word.translate(_LOOKALIKES)
    if not latin.isascii():
        return [word.casefold()]
    return [_fold_word(token) for token in latin.casefold().split()]


def _fold_word(token: str) -> str:
    """One spelling of an ASCII word: British spellings, plurals and O2 folded."""
    for old, new in _SPELLINGS:
        token = token.replace(old, new)
    if len(token) >= 4 and token[-1] == "s" and not token[0].isdigit():
        if token.endswith("ies") and len(token) > 4:
            return token[:-3] + "y"
        if not token.endswith(("ss", "us", "is")):
            return token[:-1]
    return _WORD_SPELLINGS.get(token, token)


def _content_token(token: str) -> str:
    """A token without filler, or '' when it is filler through and through."""
    if token == _COUNT_MARK:  # "a count of", as in WBC# and LOINC's [#/volume]: no name
        return ""
    if _is_ascii_word(token):
        return "" if token in _FILLER_WORDS or token.isdigit() else token
    if token in _FILLER_CJK_TOKENS:
        return ""
    for prefix in _FILLER_CJK_PREFIXES:
        if token.startswith(prefix) and len(token) > len(prefix):
            token = token[len(prefix) :]
    for suffix in _FILLER_CJK_SUFFIXES:
        if token.endswith(suffix) and len(token) > len(suffix):
            token = token[: -len(suffix)]
    return token


@functools.lru_cache(maxsize=8192)
def read(text: str) -> Text:
    """``text`` as tokens (see the module docstring); cached, as sites repeat their names."""
    folded = "".join(_fold_character(char) for char in unicodedata.normalize("NFKC", text))
    spaced = _CJK.sub(lambda m: f" {m.group()} ", folded)
    full = tuple(token for word in _WORD.findall(spaced) for token in _tokens(word))
    content = tuple(c for c in (_content_token(t) for t in full) if c)
    return Text(full=full, content=content)
