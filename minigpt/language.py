"""A transparent Spanish-vs-English check based on function words.

Function words ("de", "que", "the", "of") make up a large share of any running text and
barely depend on the topic, so the share of Spanish ones among all recognised function
words separates Spanish from English well, with no model to download. Words that are
function words in both languages ("a", "no", "me", "has", "come") are left out.
"""

from __future__ import annotations

import re
import unicodedata

_SPANISH = set(
    """
de la que el en y los se del las un por con una su para es al lo como más pero sus le ya
este sí porque esta entre cuando muy sin sobre también hasta hay donde quien desde todo
nos durante todos uno les ni contra otros ese eso ante ellos esto mí antes algunos qué
unos yo otro otras otra él tanto esa estos mucho quienes nada muchos cual poco ella estar
estas algunas algo nosotros mi mis tú te ti tu tus ellas nosotras vosotros vosotras os
cómo cuál cuándo dónde está están son fue ser hace puede tiene según o y e u
""".split()
)

_ENGLISH = set(
    """
the of and to in is it you that was for on are with as his they be at one have this from
or had by but what some we can out other were all there when up use your how said an each
she which do their if will way about many then them would like so these her see him more
could go did my than who its now over just also into only after where should very been
not because any our those does doing being
""".split()
)

# A word listed in both languages would be evidence for neither.
_SHARED = _SPANISH & _ENGLISH
_SPANISH -= _SHARED
_ENGLISH -= _SHARED


def strip_accents(text: str) -> str:
    """ "Canción" -> "Cancion": compatibility-decomposed, combining marks dropped."""
    return "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))


# Words that carry no topic in either language (for relevance measures), accent-free.
FUNCTION_WORDS = frozenset(strip_accents(word) for word in _SPANISH | _ENGLISH | _SHARED | {"a", "no", "me", "has"})

_WORD = re.compile(r"[^\W\d_]+")


def function_word_counts(text: str) -> tuple[int, int]:
    """(Spanish, English) function-word occurrences in `text`."""
    words = _WORD.findall(text.casefold())
    spanish = sum(word in _SPANISH for word in words)
    english = sum(word in _ENGLISH for word in words)
    return spanish, english


def is_spanish(text: str, threshold: float, min_evidence: int) -> bool:
    """True unless at least `min_evidence` function words show a Spanish share below threshold.

    Short texts with too little evidence ("¿Cuánto es 3 + 4?" -> "7") are accepted: the
    check exists to drop text that is clearly in another language, not to guess.
    """
    spanish, english = function_word_counts(text)
    if spanish + english < min_evidence:
        return True
    return spanish / (spanish + english) >= threshold


def language_of(text: str, threshold: float = 0.3, min_evidence: int = 3) -> str | None:
    """'es' or 'en' when the text shows enough function words to tell, else None."""
    spanish, english = function_word_counts(text)
    if spanish + english < min_evidence:
        return None
    return "es" if spanish / (spanish + english) >= threshold else "en"
