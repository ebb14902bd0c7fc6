"""TREC topics (SGML and tab-separated), qrels, and load_trec."""

import json

import pytest

from retrieval_lab.data import CollectionError, DataWarning, load_beir, load_trec, read_qrels, read_topics
from tests.conftest import DATA, needs_data

DL19 = DATA / "trec-dl-2019-passage"

SGML = """<top>
<num> Number: 301
<title> International Organized Crime

<desc> Description:
Identify organizations that participate in
international criminal activity.

<narr> Narrative:
A relevant document must name the organization.
</top>

<top>
<num> Number: 302 </num>
<title> Topic: Poliomyelitis and Post-Polio </title>
<desc> Description: Is the disease under control?
<narr> Narrative: Any mention.
</top>
"""


def test_sgml_topics_fields(tmp_path):
    f = tmp_path / "topics.301-302.txt"
    f.write_text(SGML)
    assert read_topics(f) == {"301": "International Organized Crime", "302": "Poliomyelitis and Post-Polio"}
    assert read_topics(f, field="desc") == {
        "301": "Identify organizations that participate in international criminal activity.",
        "302": "Is the disease under control?",
    }
    assert read_topics(f, field="title+desc")["302"] == "Poliomyelitis and Post-Polio Is the disease under control?"
    with pytest.raises(ValueError, match="'body'"):
        read_topics(f, field="body")


def test_sgml_topics_errors_name_the_line(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(SGML + "\n<top>\n<num> Number: 301\n<title> again\n</top>\n")
    with pytest.raises(CollectionError, match=r"t\.txt:20: duplicate query id '301' \(first on line 1\)"):
        read_topics(f)
    f.write_text("<top>\n<num> Number: 7\n<desc> only a description\n</top>\n")
    with pytest.raises(CollectionError, match=r"t\.txt:1: topic '7' has no <title>"):
        read_topics(f)


def test_tsv_topics(tmp_path):
    f = tmp_path / "topics.tsv"
    f.write_text("1\twhat is a\n2\tb\twith a tab\n\n")
    assert read_topics(f) == {"1": "what is a", "2": "b\twith a tab"}
    f.write_text("1\ta\n1\tb\n")
    with pytest.raises(CollectionError, match=r"topics\.tsv:2: duplicate query id '1'"):
        read_topics(f)
    f.write_text("1\ta\n2 no tab here\n")
    with pytest.raises(CollectionError, match=r"topics\.tsv:2: expected 'qid<TAB>text'"):
        read_topics(f)
    with pytest.raises(CollectionError, match=r"topics file not found: .*nope\.tsv"):
        read_topics(tmp_path / "nope.tsv")


def test_qrels_formats_and_errors(tmp_path):
    f = tmp_path / "qrels.txt"
    f.write_text("1 0 a 2\n1 0 b 0\n2 Q0 a 1.0\n")
    assert read_qrels(f) == {"1": {"a": 2, "b": 0}, "2": {"a": 1}}
    f.write_text("query-id\tcorpus-id\tscore\n1\ta\t1\n")
    assert read_qrels(f) == {"1": {"a": 1}}
    f.write_text("1\ta\t1\n1 0 b 1\n")
    with pytest.raises(CollectionError, match=r"qrels\.txt:2: expected 3 columns, got 4"):
        read_qrels(f)
    f.write_text("1 0 a 1\n1 0 a 0\n")
    with pytest.raises(CollectionError, match=r"qrels\.txt:2: .*'a' twice with different grades"):
        read_qrels(f)
    f.write_text("1 0 a 1\n1 0 b high\n")
    with pytest.raises(CollectionError, match=r"qrels\.txt:2: relevance grade must be an integer"):
        read_qrels(f)
    f.write_text("")
    with pytest.raises(CollectionError, match=r"qrels\.txt: no judgments"):
        read_qrels(f)
    f.write_text("1 0 a 1\n1 0 a 1\n")
    with pytest.warns(DataWarning, match="1 repeated identical"):
        assert read_qrels(f) == {"1": {"a": 1}}


def test_qrels_unknown_ids(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text("1 0 a 1\n9 0 a 1\n1 0 zz 1\n")
    with pytest.warns(DataWarning, match=r"q\.txt: 1 judgment\(s\) name unknown queries .*1 name documents"):
        assert read_qrels(f, known_queries={"1"}, known_docs={"a"}, unknown_docs="skip",
                          max_unknown_query_share=0.5) == {"1": {"a": 1}}
    with pytest.raises(CollectionError, match=r"q\.txt: 1 of the 2 judged queries \(50%.*e\.g\. '9' \(no similar id"):
        read_qrels(f, known_queries={"1"}, known_docs={"a"})  # above the default share 0.05
    with pytest.raises(CollectionError, match="all 3 judgments name unknown"):
        read_qrels(f, known_queries={"7"}, max_unknown_query_share=1.0)


def test_load_trec_from_tsv_corpus(tmp_path):
    (tmp_path / "collection.tsv").write_text("d1\tfirst doc\nd2\tsecond\tdoc\n")
    (tmp_path / "topics.txt").write_text("q1\tfirst?\nq2\tsecond?\nq3\tunjudged\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 3\nq2 0 d9 1\n")
    with pytest.warns(DataWarning, match="1 name documents not in the corpus"):
        c = load_trec(tmp_path / "collection.tsv", tmp_path / "topics.txt", tmp_path / "qrels.txt", name="t",
                      rel_threshold=2)
    assert c.name == "t" and c.splits == ["test"] and c.rel_threshold == 2
    assert c.corpus.ids() == ["d1", "d2"] and c.corpus["d2"].text == "second\tdoc"
    assert c.qrels == {"test": {"q1": {"d1": 1}, "q2": {"d2": 3, "d9": 1}}}
    assert c.topics("test") == {"q1": "first?", "q2": "second?"}
    (tmp_path / "collection.tsv").write_text("d1\tfirst doc\nd1\tagain\n")
    with pytest.raises(CollectionError, match=r"collection\.tsv:2: duplicate document id 'd1'"):
        load_trec(tmp_path / "collection.tsv", tmp_path / "topics.txt", tmp_path / "qrels.txt")


def test_load_trec_jsonl_corpus_and_split_mapping(tmp_path):
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in [
        {"id": "d1", "contents": "pyserini style"}, {"_id": "d2", "title": "T", "text": "beir style"}]))
    (tmp_path / "topics.txt").write_text(SGML.replace("301", "q1").replace("302", "q2"))
    (tmp_path / "train.txt").write_text("q1 0 d1 1\n")
    (tmp_path / "test.txt").write_text("q2 0 d2 1\n")
    c = load_trec(tmp_path / "docs.jsonl", tmp_path / "topics.txt",
                  {"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"})
    assert c.splits == ["train", "test"] and c.corpus["d1"].text == "pyserini style"
    assert c.corpus["d2"].contents() == "T beir style"
    assert c.topics("train") == {"q1": "International Organized Crime"}
    desc = load_trec(tmp_path / "docs.jsonl", tmp_path / "topics.txt", tmp_path / "test.txt", topic_field="desc")
    assert desc.topics("test") == {"q2": "Is the disease under control?"}
    assert desc.fingerprint != load_trec(tmp_path / "docs.jsonl", tmp_path / "topics.txt", tmp_path / "test.txt").fingerprint


@needs_data("trec-dl-2019-passage")
def test_trec_dl_2019_raw_files_match_the_beir_layout():
    """The raw NIST topics (qid<TAB>text) and qrels (qid Q0 docid grade) give the same collection as the BEIR copy."""
    topics = read_topics(DL19 / "raw" / "topics.dl19-passage.txt")
    assert len(topics) == 43 and topics["156493"] == "do goldfish grow"
    with pytest.warns(DataWarning, match="7003 name documents"):
        raw = load_trec(DL19 / "corpus.jsonl", DL19 / "raw" / "topics.dl19-passage.txt",
                        DL19 / "raw" / "qrels.dl19-passage.txt", runs={"bm25_top100": DL19 / "runs" / "bm25_top100.trec"})
    with pytest.warns(DataWarning):
        beir = load_beir(DL19)
    assert raw.qrels == beir.qrels and sum(map(len, raw.qrels["test"].values())) == 9260
    assert raw.topics("test") == beir.topics("test")
    assert raw.corpus.fingerprint == beir.corpus.fingerprint and len(raw.corpus) == 4297


# -- TREC SGML document files (NPL's doc-text.trec, the TREC disks) ----------------------------------------

NPL_STYLE = """<DOC>
<DOCNO>1</DOCNO>
compact memories have flexible capacities  a digital data storage
system with capacity up to bits and random and or sequential access
is described
</DOC>
<DOC>
<DOCNO>2</DOCNO>
an electronic analogue computer for solving systems of linear equations
</DOC>
"""

TREC_DISK_STYLE = """
<DOC>
<DOCNO> FT911-3 </DOCNO>
<PROFILE>_AN-BEOA7AAIFT</PROFILE>
<HEADLINE>
FT  14 MAY 91 / <P>Lasers &amp; optics</P>
</HEADLINE>
<TEXT>
Laser beams cut steel.
</TEXT>
<TEXT>A second part.</TEXT>
</DOC>
<DOC><DOCNO>AP880212-0001</DOCNO><HEAD>Head one</HEAD><HEAD>Head two</HEAD><TEXT> analogue computer   </TEXT></DOC>
"""


def test_sgml_corpus_ids_and_texts(tmp_path):
    from retrieval_lab.data.trec import read_corpus

    npl = tmp_path / "doc-text.trec"
    npl.write_text(NPL_STYLE)
    c = read_corpus(npl)
    assert c.ids() == ["1", "2"]
    assert c["1"].text == ("compact memories have flexible capacities a digital data storage system with capacity "
                           "up to bits and random and or sequential access is described")
    assert c["1"].title == ""
    assert c["2"].text == "an electronic analogue computer for solving systems of linear equations"
    import hashlib

    assert c.fingerprint == hashlib.sha256(npl.read_bytes()).hexdigest()

    disk = tmp_path / "FT911_1"  # no suffix: read as SGML from its first character
    disk.write_text(TREC_DISK_STYLE)
    d = read_corpus(disk)
    assert d.ids() == ["FT911-3", "AP880212-0001"]
    assert d["FT911-3"].title == "FT 14 MAY 91 / Lasers & optics"
    assert d["FT911-3"].text == "Laser beams cut steel. A second part."  # only <TEXT>: no <PROFILE>
    assert d["AP880212-0001"].contents() == "Head one Head two analogue computer"
    txt = tmp_path / "docs.txt"  # a .txt that starts with <DOC> is SGML, not TSV
    txt.write_text(NPL_STYLE)
    assert read_corpus(txt).ids() == ["1", "2"]


def test_sgml_corpus_bm25_run(tmp_path):
    """dataset.loader=trec over an SGML corpus: the collection loads and a BM25 run ranks the right document."""
    from retrieval_lab.data import load_collection
    from retrieval_lab.indexes import BM25Index

    (tmp_path / "doc-text.trec").write_text(NPL_STYLE)
    (tmp_path / "query-text.trec").write_text("<top>\n<num>1</num><title>linear equations computer</title>\n</top>\n"
                                              "<top>\n<num>2</num><title>data storage</title>\n</top>\n")
    (tmp_path / "qrels").write_text("1 0 2 1\n2 0 1 1\n")
    c = load_collection({"name": "npl-mini", "loader": "trec", "path": str(tmp_path / "doc-text.trec"),
                         "topics": str(tmp_path / "query-text.trec"), "qrels": str(tmp_path / "qrels")})
    assert c.corpus.ids() == ["1", "2"] and c.topics("test") == {"1": "linear equations computer", "2": "data storage"}
    index = BM25Index()
    index.build(c.corpus.ids(), [d.contents() for d in c.corpus], show_progress=False)
    run = index.search_run(list(c.topics("test")), list(c.topics("test").values()), k=10, show_progress=False)
    assert list(run["1"]) == ["2"] and list(run["2"]) == ["1"]


@pytest.mark.parametrize("content, message", [
    ("<DOC>\n<DOCNO>1</DOCNO> a\n</DOC>\nstray words\n", r"x\.trec:4: text outside <DOC> \.\.\. </DOC>: 'stray words'"),
    ("<DOC>\n<DOCNO>1</DOCNO> a\n<DOC>\n", r"x\.trec:3: <DOC> inside the <DOC> opened on line 1"),
    ("<DOC>\n<DOCNO>1</DOCNO> a\n", r"x\.trec:1: <DOC> is never closed"),
    ("<DOC>\n<DOCNO>1</DOCNO> a\n</DOC>\n</DOC>\n", r"x\.trec:4: </DOC> without <DOC>"),
    ("<DOC>\nno id here\n</DOC>\n", r"x\.trec:1: document has no <DOCNO>id</DOCNO>"),
    ("<DOC>\n<DOCNO>a b</DOCNO>\n</DOC>\n", r"x\.trec:1: document id 'a b' is empty or contains whitespace"),
    ("<DOC>\n<DOCNO>1</DOCNO>\n<TEXT>\nnever closed\n</DOC>\n", r"x\.trec:3: <TEXT> is never closed"),
    ("<DOC><DOCNO>1</DOCNO>a</DOC>\n\n<DOC><DOCNO>1</DOCNO>b</DOC>\n",
     r"x\.trec:3: duplicate document id '1' \(first on line 1\)"),
    ("<html><body>not trec</body></html>\n", r"x\.trec:1: no <DOC> \.\.\. </DOC> document found"),
])
def test_sgml_corpus_errors_name_the_line(tmp_path, content, message):
    from retrieval_lab.data.trec import read_corpus

    f = tmp_path / "x.trec"
    f.write_text(content)
    with pytest.raises(CollectionError, match=message):
        read_corpus(f)


def test_unreadable_corpus_names_the_formats(tmp_path):
    """A file no reader understands says which formats are read, with the file and line."""
    from retrieval_lab.data.trec import read_corpus

    garbage = tmp_path / "corpus.dat"
    garbage.write_text("just some words\nand more\n")
    with pytest.raises(CollectionError, match=r"corpus\.dat:1: expected 'docid<TAB>text', got 'just some words' "
                                              r"\(read as TSV\)\. Corpus formats read: JSONL .* TSV .* TREC SGML"):
        read_corpus(garbage)
    binary = tmp_path / "corpus.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00\x01")
    with pytest.raises(CollectionError, match=r"corpus\.gz:1: not valid UTF-8.*decompress it first.*TREC SGML"):
        read_corpus(binary)
    html_like = tmp_path / "page.sgml"
    html_like.write_text("<html>\n<DOCNO>1</DOCNO>\n</html>\n")
    with pytest.raises(CollectionError, match=r"page\.sgml:1: no <DOC>.*\(read as TREC SGML\)\. Corpus formats read"):
        read_corpus(html_like)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"id": "d1", "text": "ok"}\nnot json\n')
    with pytest.raises(CollectionError, match=r"c\.jsonl:2: malformed JSON.*Corpus formats read"):
        read_corpus(jsonl)
    tsv = tmp_path / "c.tsv"
    tsv.write_text("d1\ta\nd1\tb\n")
    with pytest.raises(CollectionError, match=r"c\.tsv:2: duplicate document id 'd1' \(first on line 1\)$"):
        read_corpus(tsv)  # the format was read right: no format list
