"""Hub sources through the same `datasets` code as the hub, on local folders laid out like the
repositories of the seed's two instruction datasets and of the pretrain preset's two corpora
(streamed), in their exact schemas; revisions resolved to commits."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minigpt.config import CorpusParams, Source
from minigpt.corpus import CorpusReader, ShardBuilder
from minigpt.data import prepare
from minigpt.errors import MiniGPTError
from minigpt.sources.formats import resolve_revision

SHA = "0123456789abcdef0123456789abcdef01234567"
# The Detoxify scores OASST stores per message: one schema field and one row value each.
DETOXIFY_SCORES = ("toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")


def write_parquet(path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@pytest.fixture
def alpaca_spanish(tmp_path):
    """bertin-project/alpaca-spanish: data/train-00000-of-00001-<hash>.parquet, three string columns."""
    rows = [
        (
            "Explica qué es la fotosíntesis.",
            "",
            "La fotosíntesis es el proceso por el que las plantas producen su alimento con la luz del sol.",
        ),
        ("Traduce la frase al inglés.", "El gato duerme en la casa.", "The cat sleeps in the house."),
        ("Give three tips for staying healthy.", "", "Eat a balanced diet and make sure to sleep well at night."),
        ("Escribe un saludo.", "", ""),  # empty answer
        (
            "Explica qué es la fotosíntesis.",
            "",
            "La fotosíntesis es el proceso por el que las plantas producen su alimento con la luz del sol.",
        ),
    ]  # exact duplicate
    columns = list(zip(*rows))
    folder = tmp_path / "alpaca-spanish"
    write_parquet(
        folder / "data" / "train-00000-of-00001-3a8ceb2c27df896f.parquet",
        pa.table({"instruction": columns[0], "input": columns[1], "output": columns[2]}),
    )
    return folder


OASST_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("parent_id", pa.string()),
        ("user_id", pa.string()),
        ("created_date", pa.string()),
        ("text", pa.string()),
        ("role", pa.string()),
        ("lang", pa.string()),
        ("review_count", pa.int32()),
        ("review_result", pa.bool_()),
        ("deleted", pa.bool_()),
        ("rank", pa.int32()),
        ("synthetic", pa.bool_()),
        ("model_name", pa.string()),
        (
            "detoxify",
            pa.struct([(name, pa.float64()) for name in DETOXIFY_SCORES]),
        ),
        ("message_tree_id", pa.string()),
        ("tree_state", pa.string()),
        ("emojis", pa.struct([("name", pa.list_(pa.string())), ("count", pa.list_(pa.int32()))])),
        (
            "labels",
            pa.struct(
                [("name", pa.list_(pa.string())), ("value", pa.list_(pa.float64())), ("count", pa.list_(pa.int32()))]
            ),
        ),
    ]
)


def oasst_row(message_id, parent_id, role, text, lang="es", rank=None, deleted=False, review_result=True, tree="t1"):
    return {
        "message_id": message_id,
        "parent_id": parent_id,
        "user_id": "u",
        "created_date": "2023-02-05T14:23:50",
        "text": text,
        "role": role,
        "lang": lang,
        "review_count": 3,
        "review_result": review_result,
        "deleted": deleted,
        "rank": rank,
        "synthetic": False,
        "model_name": None,
        "detoxify": {name: 0.001 for name in DETOXIFY_SCORES},
        "message_tree_id": tree,
        "tree_state": "ready_for_export",
        "emojis": {"name": ["+1"], "count": [2]},
        "labels": {"name": ["spam"], "value": [0.0], "count": [3]},
    }


LONG_ANSWER = (
    "Las algas tienen clorofila en sus cloroplastos: con la luz del sol convierten el agua y el dióxido "
    "de carbono en azúcares, y liberan oxígeno al agua."
)
MAX_CHARS = 300  # the last turn of the algae conversation fits with one earlier exchange, not with two


@pytest.fixture
def oasst1(tmp_path):
    """OpenAssistant/oasst1: data/{train,validation}-00000-of-00001-<hash>.parquet, one message per row."""
    train = [
        oasst_row("p1", None, "prompter", "¿Qué es la fotosíntesis y por qué es importante?"),
        oasst_row(
            "a1", "p1", "assistant", "Es el proceso por el que las plantas convierten la luz en energía.", rank=1
        ),
        oasst_row(
            "a2", "p1", "assistant", "La fotosíntesis convierte la luz del sol en la energía de las plantas.", rank=0
        ),
        oasst_row("a3", "p1", "assistant", "Una respuesta borrada que tenía el mejor rango.", rank=0, deleted=True),
        oasst_row("a1en", "p1", "assistant", "Photosynthesis turns light into energy.", lang="en", rank=2),
        oasst_row("p1en", "a1en", "prompter", "¿Puedes decirlo en español?"),  # under an English reply
        oasst_row("a1es", "p1en", "assistant", "Claro: la planta convierte la luz en energía."),
        oasst_row("p2", "a2", "prompter", "¿Y en las algas?"),  # a follow-up turn: an example with a history
        oasst_row("a4", "p2", "assistant", "También la hacen las algas."),
        oasst_row("p8", "a4", "prompter", "Cuéntamelo con todo detalle, por favor."),  # fits, its whole history not
        oasst_row("a8", "p8", "assistant", LONG_ANSWER),
        oasst_row("p7", "a1", "prompter", "¿Qué necesitan las plantas para hacerla?"),  # under the second reply
        oasst_row("a7b", "p7", "assistant", "Luz, agua y dióxido de carbono."),
        oasst_row("p9", "a1", "prompter", "¿Y por qué las hojas son verdes?"),
        oasst_row("a9", "p9", "assistant", LONG_ANSWER + " " + LONG_ANSWER),  # longer than max_chars by itself
        oasst_row("p3", None, "prompter", "What is photosynthesis?", lang="en", tree="t2"),
        oasst_row("a5", "p3", "assistant", "It is how plants make food.", lang="en", rank=0, tree="t2"),
        oasst_row("p4", None, "prompter", "Un mensaje que no pasó la revisión.", review_result=False, tree="t3"),
        oasst_row("a6", "p4", "assistant", "Una respuesta a un mensaje rechazado.", rank=0, tree="t3"),
        oasst_row("p5", None, "prompter", "¿Una pregunta sin ninguna respuesta todavía?", tree="t4"),
    ]
    validation = [
        oasst_row("p6", None, "prompter", "¿Cuál es la capital de España?", tree="t5"),
        oasst_row("a7", "p6", "assistant", "La capital de España es Madrid.", rank=0, tree="t5"),
    ]
    folder = tmp_path / "oasst1"
    for split, rows in (("train", train), ("validation", validation)):
        write_parquet(
            folder / "data" / f"{split}-00000-of-00001-b42a775f407cee45.parquet",
            pa.Table.from_pylist(rows, schema=OASST_SCHEMA),
        )
    return folder


def test_alpaca_spanish_from_a_folder_like_its_hub_repository(alpaca_spanish, prepare_params):
    source = {"kind": "alpaca", "hub": str(alpaca_spanish), "name": "alpaca-es"}
    stats = prepare(prepare_params([source], on_error="skip")).stats
    counts = stats["sources"]["alpaca-es"]
    assert (counts["records"], counts["examples"], counts["kept"]) == (5, 5, 2)
    assert counts["commit"] == "local folder"  # nothing says which commit these files are
    assert stats["dropped"]["not_spanish"] == 1 and stats["dropped"]["empty"] == 1
    assert stats["dropped"]["exact_duplicate"] == 1


def oasst1_rows(folder, prepare_params, replies: str) -> tuple[dict, dict]:
    """(the source's counts, the kept rows by instruction) of oasst1 read with `replies`."""
    source = {"kind": "oasst", "hub": str(folder), "split": "train+validation", "name": "oasst1-es", "replies": replies}
    result = prepare(prepare_params([source], on_error="skip", validation_fraction=0.5, max_chars=MAX_CHARS))
    rows = {row["instruction"]: row for kept in result.splits.values() for row in kept}
    return result.stats["sources"]["oasst1-es"], rows


def test_oasst1_best_replies_follow_the_best_branch(oasst1, prepare_params):
    counts, rows = oasst1_rows(oasst1, prepare_params, "best")
    # 22 messages: 2 usable openers, the best reply of each, and the two follow-ups on the first
    # one's best branch; the last of them keeps the one earlier exchange that fits in max_chars.
    assert (counts["records"], counts["examples"], counts["kept"]) == (22, 4, 4)
    assert (counts["kept_follow_ups"], counts["history_trimmed"], sum(counts["dropped"].values())) == (2, 1, 0)
    assert {instruction: row["output"] for instruction, row in rows.items()} == {
        "¿Qué es la fotosíntesis y por qué es importante?": (
            "La fotosíntesis convierte la luz del sol en la energía de las plantas."
        ),
        "¿Y en las algas?": "También la hacen las algas.",
        "Cuéntamelo con todo detalle, por favor.": LONG_ANSWER,
        "¿Cuál es la capital de España?": "La capital de España es Madrid.",
    }
    assert [message["content"] for message in rows["¿Y en las algas?"]["history"]] == [
        "¿Qué es la fotosíntesis y por qué es importante?",
        "La fotosíntesis convierte la luz del sol en la energía de las plantas.",
    ]
    assert [message["content"] for message in rows["Cuéntamelo con todo detalle, por favor."]["history"]] == [
        "¿Y en las algas?",
        "También la hacen las algas.",
    ]


def test_oasst1_all_replies_read_every_spanish_reply_with_its_prompt(oasst1, prepare_params):
    counts, rows = oasst1_rows(oasst1, prepare_params, "all")
    # Beside the best branch: the second reply to the opener and the follow-ups under it; not the
    # deleted reply, the English one or the Spanish turn under it; one follow-up is too long.
    assert (counts["records"], counts["examples"], counts["kept"]) == (22, 7, 6)
    assert (counts["kept_follow_ups"], counts["history_trimmed"]) == (3, 1)
    assert counts["dropped"] == {**dict.fromkeys(counts["dropped"], 0), "too_long": 1}
    assert rows["¿Qué necesitan las plantas para hacerla?"]["output"] == "Luz, agua y dióxido de carbono."
    assert [message["content"] for message in rows["¿Qué necesitan las plantas para hacerla?"]["history"]] == [
        "¿Qué es la fotosíntesis y por qué es importante?",
        "Es el proceso por el que las plantas convierten la luz en energía.",
    ]
    assert "¿Puedes decirlo en español?" not in rows and "¿Y por qué las hojas son verdes?" not in rows
    # Two replies to one prompt: two examples with the same instruction (rows by instruction keep the last).
    assert rows["¿Qué es la fotosíntesis y por qué es importante?"]["output"].startswith("Es el proceso")


def test_a_branch_is_read_at_the_commit_it_names_and_the_commit_is_recorded(monkeypatch, prepare_params):
    import datasets
    import huggingface_hub

    asked, loaded = [], []

    class Info:
        sha = SHA

    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "dataset_info",
        lambda self, repo_id, revision: asked.append((repo_id, revision)) or Info(),
    )
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda name, config, split, revision, streaming: (
            loaded.append(revision)
            or [
                {
                    "instruction": "Explica qué es un átomo.",
                    "input": "",
                    "output": "Un átomo es la parte más pequeña de un elemento químico.",
                }
            ]
        ),
    )
    source = {"kind": "alpaca", "hub": "bertin-project/alpaca-spanish", "revision": "main", "name": "alpaca-es"}
    stats = prepare(prepare_params([source])).stats
    assert asked == [("bertin-project/alpaca-spanish", "main")] and loaded == [SHA]
    assert stats["sources"]["alpaca-es"]["commit"] == SHA


def test_a_folder_from_hf_download_is_recorded_at_its_commit(alpaca_spanish, prepare_params):
    notes = alpaca_spanish / ".cache" / "huggingface" / "download" / "data"
    notes.mkdir(parents=True)
    (notes / "train-00000-of-00001-3a8ceb2c27df896f.parquet.metadata").write_text(
        f'{SHA}\n"d41d8cd98f00b204e9800998ecf8427e"\n1732800000.0\n', encoding="utf-8"
    )
    source = {"kind": "alpaca", "hub": str(alpaca_spanish), "name": "alpaca-es"}
    assert prepare(prepare_params([source], on_error="skip")).stats["sources"]["alpaca-es"]["commit"] == SHA


def test_a_commit_hash_needs_no_hub_and_an_unresolvable_branch_says_what_to_do(monkeypatch):
    import huggingface_hub

    assert resolve_revision(Source(kind="alpaca", hub="org/data", revision=SHA)) == SHA

    def offline(self, repo_id, revision):
        raise ConnectionError("the hub is unreachable")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", offline)
    with pytest.raises(MiniGPTError, match="(?s)could not resolve revision 'main' .*data/raw/hub/"):
        resolve_revision(Source(kind="alpaca", hub="org/data", revision="main"))


def test_a_hub_id_needs_a_revision_but_a_local_folder_does_not():
    with pytest.raises(ValueError, match="needs a 'revision'"):
        Source(kind="alpaca", hub="org/data")
    assert Source(kind="alpaca", hub="data/raw/hub/alpaca-spanish").local_hub


# --------------------------------------------------------------------------- pretraining corpora (streamed)

FINEWEB_2_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("id", pa.string()),
        ("dump", pa.string()),
        ("url", pa.string()),
        ("date", pa.string()),
        ("file_path", pa.string()),
        ("language", pa.string()),
        ("language_score", pa.float64()),
        ("language_script", pa.string()),
        ("minhash_cluster_size", pa.int64()),
        ("top_langs", pa.string()),
    ]
)


def fineweb_row(number: int, text: str, score: float = 0.97) -> dict:
    return {
        "text": text,
        "id": f"<urn:uuid:{number:08d}-0000-4000-8000-000000000000>",
        "dump": "CC-MAIN-2024-10",
        "url": f"https://ejemplo.es/articulo/{number}",
        "date": "2024-02-21T10:00:00Z",
        "file_path": "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/0/warc/CC-MAIN-0.warc.gz",
        "language": "spa",
        "language_score": score,
        "language_script": "Latn",
        "minhash_cluster_size": 1,
        "top_langs": json.dumps({"spa_Latn_score": score}),
    }


def hub_readme(config: str, files: dict[str, str]) -> str:
    """A dataset card whose YAML names a config's files per split, as the hub repositories' do."""
    splits = "".join(f"  - split: {split}\n    path: {path}\n" for split, path in files.items())
    return f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{splits}---\n# Dataset card\n"


@pytest.fixture
def fineweb_2(tmp_path):
    """HuggingFaceFW/fineweb-2: data/spa_Latn/{train,test}/000_0000N.parquet, the config in README.md."""
    folder = tmp_path / "fineweb-2"
    texts = [f"Texto número {i} de la web, escrito en español con calma y sin prisa." for i in range(40)]
    rows = [fineweb_row(i, text, score=0.5 if i % 10 == 3 else 0.97) for i, text in enumerate(texts)]
    for number, chunk in enumerate((rows[:20], rows[20:])):
        write_parquet(
            folder / "data" / "spa_Latn" / "train" / f"000_{number:05d}.parquet",
            pa.Table.from_pylist(chunk, schema=FINEWEB_2_SCHEMA),
        )
    write_parquet(
        folder / "data" / "spa_Latn" / "test" / "000_00000.parquet",
        pa.Table.from_pylist([fineweb_row(99, "Un texto de la partición de prueba.")], schema=FINEWEB_2_SCHEMA),
    )
    (folder / "README.md").write_text(
        hub_readme("spa_Latn", {"train": "data/spa_Latn/train/*", "test": "data/spa_Latn/test/*"}), encoding="utf-8"
    )
    return folder


@pytest.fixture
def wikipedia(tmp_path):
    """wikimedia/wikipedia: 20231101.es/train-0000N-of-00002.parquet (id, url, title, text)."""
    folder = tmp_path / "wikipedia"
    articles = [(str(i), f"Artículo {i}", f"El artículo {i} trata de la historia de un pueblo.") for i in range(6)]
    for number, chunk in enumerate((articles[:3], articles[3:])):
        write_parquet(
            folder / "20231101.es" / f"train-{number:05d}-of-00002.parquet",
            pa.table(
                {
                    "id": [row[0] for row in chunk],
                    "url": [f"https://es.wikipedia.org/wiki?curid={row[0]}" for row in chunk],
                    "title": [row[1] for row in chunk],
                    "text": [row[2] for row in chunk],
                }
            ),
        )
    (folder / "README.md").write_text(hub_readme("20231101.es", {"train": "20231101.es/train-*"}), encoding="utf-8")
    return folder


def corpus_records(*sources: dict, **params) -> list:
    return list(CorpusReader(CorpusParams.model_validate({"sources": list(sources), **params})).records())


def test_fineweb_2_streams_from_a_folder_like_its_hub_repository(fineweb_2):
    source = {"hub": str(fineweb_2), "config": "spa_Latn", "name": "fineweb-2-es"}
    records = corpus_records(source, min_language_score=0.7)
    assert len(records) == 40  # the train split only
    assert [record.number for record in records if record.skipped == "low language score"] == [4, 14, 24, 34]
    assert records[0].text == "Texto número 0 de la web, escrito en español con calma y sin prisa."
    resumed = CorpusReader(CorpusParams.model_validate({"sources": [source]}), consumed={0: 25})
    assert next(resumed.records()).text.startswith("Texto número 25 ")


def test_wikipedia_streams_from_a_folder_like_its_hub_repository(wikipedia):
    records = corpus_records({"hub": str(wikipedia), "config": "20231101.es"})
    assert [record.text for record in records] == [
        f"El artículo {i} trata de la historia de un pueblo." for i in range(6)
    ]


def test_a_budget_reads_only_the_files_it_needs(fineweb_2, tmp_path, corpus_tokenizer):
    """Records are read a batch (about a million characters) ahead of the tokens counted."""
    train = fineweb_2 / "data" / "spa_Latn" / "train"
    long_texts = [f"Texto largo número {i}. " + "La web en español dice muchas cosas. " * 1500 for i in range(20)]
    write_parquet(
        train / "000_00000.parquet",
        pa.Table.from_pylist([fineweb_row(i, text) for i, text in enumerate(long_texts)], schema=FINEWEB_2_SCHEMA),
    )
    (train / "000_00001.parquet").write_bytes(b"PAR1 damaged beyond reading PAR1")
    source = {"hub": str(fineweb_2), "config": "spa_Latn", "name": "fineweb-2-es"}
    budget = CorpusParams.model_validate({"sources": [source], "max_tokens": 60_000, "validation_fraction": 0.2})
    builder = ShardBuilder(budget, corpus_tokenizer, tmp_path / "partial")
    builder.run()
    index = builder.finish(tmp_path / "shards")
    assert index["budget_reached"] and index["sources"][0]["records"] < 20  # the damaged file was never opened
    everything = budget.model_copy(update={"max_tokens": 0})
    with pytest.raises(MiniGPTError, match="source 'fineweb-2-es': reading .* failed"):
        ShardBuilder(everything, corpus_tokenizer, tmp_path / "partial").run()


def test_a_hub_corpus_is_streamed_at_the_commit_its_revision_names(monkeypatch, wikipedia, tmp_path, corpus_tokenizer):
    import datasets
    import huggingface_hub

    class Info:
        sha = SHA

    asked, loaded, load = [], [], datasets.load_dataset
    monkeypatch.setattr(
        huggingface_hub.HfApi, "dataset_info", lambda self, repo_id, revision: asked.append(revision) or Info()
    )

    def from_the_folder(name, config, split, revision, streaming):
        loaded.append((name, config, split, revision, streaming))
        return load(str(wikipedia), config, split=split, streaming=streaming)

    monkeypatch.setattr(datasets, "load_dataset", from_the_folder)
    source = {"hub": "wikimedia/wikipedia", "config": "20231101.es", "revision": "main", "name": "wikipedia-es"}
    params = CorpusParams.model_validate({"sources": [source], "validation_fraction": 0.3})
    builder = ShardBuilder(params, corpus_tokenizer, tmp_path / "partial")
    builder.run()
    index = builder.finish(tmp_path / "shards")
    assert asked == ["main"] and loaded == [("wikimedia/wikipedia", "20231101.es", "train", SHA, True)]
    assert index["sources"][0] | {"records": 6} == index["sources"][0] and index["sources"][0]["commit"] == SHA
