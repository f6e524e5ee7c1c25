"""Importers: datasets and web archives into snapshots, one module per format, and export to WARC.

Every importer has the signature `import_<format>(sources, out, *, name=None, capture_date=None) ->
ImportReport`: it reads `sources`, writes (or extends) the snapshot directory `out`, writes `tasks.jsonl`
there for question-answering datasets, and raises `ImportFormatError` (naming file, line or record, and
field) on input it cannot read. `IMPORTERS` maps the format names of `miroenv snapshot import FORMAT` to
them."""

from __future__ import annotations

from miroenv.importers.base import TASKS_FILE, Importer, ImportFormatError, ImportReport
from miroenv.importers.corpus_jsonl import import_corpus_jsonl
from miroenv.importers.hotpotqa import import_hotpotqa
from miroenv.importers.html_dir import import_html_dir
from miroenv.importers.musique import import_musique
from miroenv.importers.paragraphs import wikipedia_url
from miroenv.importers.serper_jsonl import import_serper_jsonl
from miroenv.importers.twowiki import import_twowiki
from miroenv.importers.warc import import_warc
from miroenv.importers.warc_export import ExportReport, export_warc

IMPORTERS: dict[str, Importer] = {
    "warc": import_warc,
    "hotpotqa": import_hotpotqa,
    "musique": import_musique,
    "2wiki": import_twowiki,
    "corpus-jsonl": import_corpus_jsonl,
    "serper-jsonl": import_serper_jsonl,
    "html-dir": import_html_dir,
}
"""Format name -> importer."""

__all__ = [
    "IMPORTERS",
    "TASKS_FILE",
    "ExportReport",
    "ImportFormatError",
    "ImportReport",
    "Importer",
    "export_warc",
    "import_corpus_jsonl",
    "import_hotpotqa",
    "import_html_dir",
    "import_musique",
    "import_serper_jsonl",
    "import_twowiki",
    "import_warc",
    "wikipedia_url",
]
