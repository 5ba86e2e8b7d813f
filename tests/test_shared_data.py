"""Real-data checks on the Spanish data kit in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

from minigpt.data import prepare
from minigpt.tokenizer import plain_text, read_documents
from tests.helpers import SHARED_DATA, needs_shared_data, uses_data_kit

pytestmark = [needs_shared_data, uses_data_kit]


def test_the_kit_instructions_prepare_cleanly(prepare_params):
    kit = SHARED_DATA / "instrucciones-es"
    params = prepare_params(
        [
            {"kind": "jsonl", "path": str(kit / "opcion-multiple.jsonl"), "name": "okapi"},
            {"kind": "jsonl", "path": str(kit / "traduccion-1.jsonl"), "name": "tatoeba"},
        ],
        validation_fraction=0.05,
        split_by="prompt",
    )  # ten wordings serve 20k translations
    stats = prepare(params).stats
    read = stats["examples"]["read"]
    assert read == 5961 + 21042 and not stats["skipped_records"]
    assert stats["dropped"]["not_spanish"] < 0.005 * read  # translation pairs are half English: kept
    assert sum(stats["categories"]["traducción"].values()) > 20000  # the kit's own label, a known category
    assert sum(stats["categories"]["ciencia"].values()) >= 4000  # ARC items
    assert 0.04 < stats["examples"]["validation"] / stats["examples"]["kept"] < 0.06


def test_the_kit_corpus_reads_as_documents():
    documents = read_documents(SHARED_DATA / "corpus-es" / "quijote.txt", plain_text)
    assert len(documents) == 128 and all(document.strip() for document in documents)
