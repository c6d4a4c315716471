"""The passage answerer's invariants on real text: quotes are real spans in order, code stays code, a heading is
never an answer, citations are numbered 1..n in order of first use."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.keyword import stem
from index.records import ChunkRecord, Hit
from service.citations import CitationChecker, renumber, reorder
from service.extractive.passages import FEATURES, PassageAnswerer
from service.extractive.question import Focus, Wanted, question_terms
from service.extractive.units import code_like, units
from service.retrieval import Candidate

# real passages: the Debian Administrator's Handbook (sect.apt-get.html, sect.firewall-packet-filtering.html)
# and SQLite's WAL page, as Quelle's HTML parser renders them (blocks apart, <pre> lines kept)
APT = """It can be useful to systematically install the same list of packages on several computers. This can be done quite easily.

First, retrieve the list of packages installed on the computer which will serve as the “model” to copy.

$ dpkg --get-selections >pkg-list

The pkg-list file then contains the list of installed packages. Next, transfer the pkg-list file onto the computers you want to update and use the following commands:

## Update dpkg's database of known packages
# avail=`mktemp`
# apt-cache dumpavail > "$avail"
# dpkg --merge-avail "$avail"
# rm -f "$avail"
## Update dpkg's selections
# dpkg --set-selections < pkg-list
## Ask apt-get to install the selected packages
# apt-get dselect-upgrade

The first commands record the list of available packages in the dpkg database."""

FIREWALL = """TIP Installing the Rules at Each Boot

To enable a default firewall in Debian, you need to store the rules in /etc/nftables.conf and execute systemctl enable nftables as root. You can stop the firewall by executing nft flush ruleset as root.

Example 14.1. interfaces file calling firewall script

auto eth0
iface eth0 inet static
address 192.168.0.1
up /usr/local/etc/arrakis.fw"""

WAL = """Activating And Configuring WAL Mode

An SQLite database connection defaults to journal_mode=DELETE. To convert to WAL mode, use the following pragma:

PRAGMA journal_mode=WAL;

The journal_mode pragma returns a string which is the new journal mode. On success, the pragma will return the string "wal". If the conversion to WAL could not be completed, the journal mode will be unchanged."""


def candidate(text: str, n: int = 0, heading: tuple[str, ...] = ()) -> Candidate:
    chunk = ChunkRecord(f"c{n}", f"d{n}", 0, text, 0, len(text), len(text.split()), page=None, heading_path=heading)
    return Candidate(Hit(chunk, 1.0 / (n + 1), f"/docs/file{n}.html", f"File {n}"), 1.0 / (n + 1))


def test_units_keep_code_blocks_whole_and_headings_apart():
    got = units(APT)
    code = [u for u in got if u.kind == "code"]
    assert code[0].text == "$ dpkg --get-selections >pkg-list"
    assert code[1].text.splitlines()[0] == "## Update dpkg's database of known packages"
    assert "# dpkg --set-selections < pkg-list" in code[1].text.splitlines()
    fw = units(FIREWALL)
    assert [u.kind for u in fw if u.text.startswith(("TIP", "Example"))] == ["heading", "heading"]
    assert any(u.kind == "code" and u.text.splitlines() == ["auto eth0", "iface eth0 inet static",
                                                           "address 192.168.0.1", "up /usr/local/etc/arrakis.fw"]
               for u in fw)
    wal = units(WAL)
    assert wal[0].kind == "heading" and any(u.kind == "code" and u.text == "PRAGMA journal_mode=WAL;" for u in wal)


@pytest.mark.parametrize("line, code", [
    ("$ dpkg --get-selections >pkg-list", True), ("PRAGMA journal_mode=WAL;", True),
    ('DPkg::options { "--force-overwrite"; }', True),
    ("programs in the /etc/cron.hourly/ directory once per hour;", False),
    ("The first commands record the list of available packages in the dpkg database.", False),
    ("TIP Incremental updates", False), ("これらフィールドは、各指定パッケージの特定バージョン番号に適用対象を制限できます;", False),
])
def test_code_lines(line, code):
    assert code_like(line) is code


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(APT.split("\n") + FIREWALL.split("\n") + WAL.split("\n") + ["", "", "x"]),
                max_size=40))
def test_units_are_spans_of_the_text_in_order(lines):
    text = "\n".join(lines)
    got = units(text)
    assert all(a.end <= b.start for a, b in zip(got, got[1:], strict=False))
    for u in got:
        span = text[u.start:u.end]
        assert span.strip() == span and span
        assert " ".join(u.text.split()) == " ".join(span.split())  # the shown text is the span's words


def test_question_focus_and_stems():
    assert Focus.of("How do I enable WAL mode?").command
    assert Focus.of("Which file holds the host name?").place
    assert Focus.of("How often does Debian publish a point release?").quantity
    assert Focus.of("キーボード配列を変更するにはどうすればいいですか？").command
    assert stem("enabled") == stem("enabling") == stem("enable")
    assert "コマンド" not in question_terms("新しいユーザアカウントを作るコマンドは何ですか？")


@pytest.mark.parametrize(("question", "held"), [
    ("atで予約したジョブを取り消すには？", True),  # the at command, not the English preposition
    ("用 at 安排的任务怎么取消？", True),
    ("How do I cancel a job queued at a given time?", False),
])
def test_an_english_stop_word_is_a_name_in_a_japanese_or_chinese_question(question, held):
    assert ("at" in question_terms(question)) is held


@pytest.mark.parametrize(("text", "command"), [
    ("Typically, accounts are created with the adduser command.", True),
    ("典型的に、ユーザアカウントの作成作業は adduser コマンドを使って行われます。", True),
    ("新しいモジュールの有効化は a2enmod module を実行するだけで簡単に行うことが可能です。", True),
    ("通常使用 adduser 命令创建帐户。", True),
    ("要启用新模块，只需运行 a2enmod module。", True),
    ("另外一种方法可以向后推迟一段时间执行命令：at now + number period。", True),  # a command after "："
    ("可以使用如下两个命令：apt-get clean完全清空整个目录", True),
    ("之后，你可以使用命令 reportbug 来发送你自己的缺陷报告。", True),  # "use the command X" (handbook 7.2.4)
    ("コマンド dpkg-reconfigure で設定し直せます。", True),
    ("这个命令需要管理员权限。", False),
    ("注意：这是一个例子。", False),
    ("包括：Apache、Nginx 和 lighttpd。", False),
    ("Apache はモジュール式サーバで、多くの機能が外部モジュールによって実装されています。", False),
    ("Apache 是一个模块化服务器。", False),
    # a Latin name, then Japanese prose that ends in "を使う": not a command (the Japanese handbook, 11.2.3)
    ("Apache とクライアントの間で通信対象の仮想ホストが決定される前は、Apache は常にデフォルトの仮想ホストの定める証明書を使うでしょう。",
     False),
    ("apt purge软件包命令包含一个彻底删除 — 相关的配置文件也会被删除。", True),  # a placeholder between name and 命令
    ("rsync コマンド (同名のパッケージに含まれます) が使われています。", True),
])
def test_a_command_named_in_japanese_or_chinese_prose_counts_as_one(text, command):
    """A how-to question rewards units that name a command: "X コマンド", "X を実行", "运行 X" as much as
    "the X command" (before, only English phrasing and option flags counted)."""
    unit = units(text)[0]
    assert Focus(command=True, place=False, quantity=False).reward(unit) == (0.6 if command else 0.0)


@pytest.fixture(scope="module")
def answerer(embedder):
    return PassageAnswerer(embedder)


def test_the_passage_quotes_whole_sentences_in_order_with_its_code(answerer):
    contexts = [candidate(FIREWALL, 0, ("Firewall",)), candidate(APT, 1, ("Installing and Removing",))]
    got = answerer.extract("How can I copy the list of installed packages to other computers?", contexts)
    assert got is not None
    assert "dpkg --get-selections >pkg-list" in got.text or "# dpkg --set-selections < pkg-list" in got.text
    for q in got.quotes:
        source = contexts[q.n - 1].hit.chunk.text
        assert " ".join(q.text.split()) == " ".join(source[q.start:q.end].split())  # a real span, whole
        kinds = [u.kind for u in units(source) if q.start <= u.start and u.end <= q.end]
        assert "heading" not in kinds[:1] and kinds, "a passage never starts with, nor is, a heading"
    if "```" in got.text:  # code is shown as code: its lines as they are, fenced
        block = re.search(r"```\n(.*?)\n```", got.text, re.S)
        assert block is not None and "\n" in block.group(1) or "$ dpkg" in got.text


def test_a_how_to_question_gets_the_command_not_the_description(answerer):
    got = answerer.extract("How do I enable WAL mode?", [candidate(WAL, 0, ("Write-Ahead Logging",))])
    assert got is not None and "PRAGMA journal_mode=WAL;" in got.text
    assert "```\nPRAGMA journal_mode=WAL;\n```" in got.text  # on its own line, as code
    assert not got.text.startswith("Activating")  # the heading is no part of the answer


# the Debian Administrator's Handbook in Japanese (sect.hostname-name-service.html), as the parser renders it
HOSTNAME_JA = """IP 番号に名前を割り当てることで、マシンを識別する情報は覚えやすくなります。実際には、IP アドレスはネットワークカードなどのデバイスと関連付けられたネットワークインターフェースを識別するものです。

しかしながら、それぞれのマシンは本名 (または「canonical」名) で識別されます。この名前は /etc/hostname ファイルに保存され、hostname コマンドを通じた初期化スクリプトを使って Linux カーネルに伝えられます。マシン名の現在の値は仮想ファイルシステムの中に保存されており、cat /proc/sys/kernel/hostname コマンドで値を確認できます。

BACK TO BASICS /proc/ と /sys/、仮想ファイルシステム

/proc/ と /sys/ ファイルツリーは「仮想」ファイルシステムによって生成されます。"""


@pytest.mark.parametrize("neighbours", [True, False])
def test_a_neighbour_holding_what_the_question_asks_for_joins_the_passage(embedder, neighbours):
    question = "マシンのホスト名はどのファイルに書かれていますか？"  # asks for a file: a path
    # the rule alone: with `context_words` the sentence that names the file is the anchor (tested below)
    got = PassageAnswerer(embedder, focus_neighbours=neighbours, context_words=0.0).extract(
        question, [candidate(HOSTNAME_JA, 0, ("8.3. ホスト名と名前解決サービスの設定",))])
    assert got is not None
    first = got.quotes[0].text
    assert first.endswith("cat /proc/sys/kernel/hostname コマンドで値を確認できます。")  # the anchor
    # the sentence before it, in the same paragraph, names the file: it joins (and only with the rule)
    assert ("この名前は /etc/hostname ファイルに保存され" in first) is neighbours
    assert "しかしながら" not in first  # it holds no path: only the neighbour that does joins


def test_no_answer_from_unrelated_text(answerer):
    assert answerer.extract("What is the meal allowance in Shanghai?", [candidate(FIREWALL, 0)]) is None


def test_a_name_the_question_asks_about_must_be_in_the_quoted_passages_chunk(embedder):
    """"Redis 服务器的默认端口是多少？": Redis is in a retrieved chunk (a list of databases a TURN server can use),
    so retrieval lets the question through, but the passage about ports comes from a chunk without it: no
    answer. With the name in the passage's own chunk, the answer stands."""
    ports = ("RPC 服务注册到一个被称为 portmapper 的目录。想要执行 NFS 查询的客户端首先处理 portmapper（在端口 111，TCP 或"
             " UDP），回复通常提到端口 2049（NFS 默认的）。")
    turn = "SQLite 数据库默认在 /var/db/turndb 中配置用户账户设置，而如果需要的话可以替代设置 PostgreSQL、MySQL 或 Redis。"
    question = "Redis 服务器的默认端口是多少？"
    assert PassageAnswerer(embedder).extract(question, [candidate(ports, 0), candidate(turn, 1)]) is None
    loose = PassageAnswerer(embedder, names_in_passage=False).extract(question, [candidate(ports, 0), candidate(turn, 1)])
    assert loose is not None and "2049" in loose.text  # what was shown before: the NFS port as Redis's
    named = ports.replace("NFS 查询", "Redis 和 NFS 查询")
    got = PassageAnswerer(embedder).extract(question, [candidate(named, 0), candidate(turn, 1)])
    assert got is not None and "2049" in got.text


def test_citations_are_numbered_by_first_use_without_gaps():
    text, order = renumber("Second block first [3]. Then the first [1]. Again [3] and both [1, 3].")
    assert text == "Second block first [1]. Then the first [2]. Again [1] and both [2, 1]."
    assert order == [3, 1] and renumber(text) == (text, [1, 2])  # applying it again changes nothing
    contexts = [candidate(APT, 0), candidate(FIREWALL, 1), candidate(WAL, 2)]
    assert [c.hit.chunk.id for c in reorder(contexts, order)] == ["c2", "c0", "c1"]
    checked = CitationChecker.from_extract("PRAGMA journal_mode=WAL; [3]\n\nuse dpkg [1]",
                                           [(3, "PRAGMA journal_mode=WAL;"), (1, "use dpkg")], contexts)
    assert checked.answer == "PRAGMA journal_mode=WAL; [1]\n\nuse dpkg [2]"
    assert [(c.n, c.chunk_id, c.quote) for c in checked.citations] == [
        (1, "c2", "PRAGMA journal_mode=WAL;"), (2, "c0", "use dpkg")]
    assert all(c.supported and c.quotes == (c.quote,) for c in checked.citations)


def test_the_stream_renumbers_as_it_goes():
    from service.answering import MarkerFilter

    f = MarkerFilter(5)
    out = "".join(f.filter(iter(["Fact [", "4]. Other [2", "]. Bad [9]. Again [4].", " Pair [2, 4]"])))
    assert out == "Fact [1]. Other [2]. Bad . Again [1]. Pair [2, 1]" and f.order == [4, 2]


def test_overlapping_chunks_never_make_a_sentence_appear_twice(answerer):
    # two chunks of one page overlap (the chunker's overlap), a third repeats a passage (a page that repeats it)
    half = len(APT) // 2
    contexts = [candidate(APT[: half + 200], 0), candidate(APT[half - 200:], 1), candidate(APT, 2)]
    for question in ("How can I copy the list of installed packages to other computers?",
                     "What does the pkg-list file contain?", "How do I install the selected packages?"):
        got = answerer.extract(question, contexts)
        assert got is not None
        shown = [u.text for q in got.quotes for u in units(q.text)]
        assert len(shown) == len(set(shown)), got.text


def test_a_second_passage_does_not_repeat_the_first(answerer):
    shared = "The edquota user (or edquota -g group) command allows you to change the limits while examining current disk space usage."
    a = f"The quota system allows limiting disk space allocated to a user or group of users. {shared}"
    b = f"{shared} It also takes -t to define a maximum authorized grace period within which a soft limit may be exceeded."
    got = answerer.extract("How do I change the quota limits and the grace period?",
                           [candidate(a, 0, ("Quotas",)), candidate(b, 1, ("Quotas",))])
    assert got is not None and "grace period" in got.text
    assert got.text.count("examining current disk space usage") == 1, got.text


def test_the_checker_keeps_a_supported_code_block_whole_and_cites_it(embedder):
    """A generated answer's fenced code block is one claim: kept whole with its lines and cited when its block
    holds its words, quoted with the block's own code; a lead-in ("Run this:") claims nothing."""
    checker = CitationChecker(embedder)
    contexts = [candidate(FIREWALL, 0), candidate(APT, 1)]
    got = checker.check("Run this on the model machine:\n\n```\n$ dpkg --get-selections >pkg-list\n```\n", contexts,
                        attribute=True)
    assert got.unsupported == []
    assert "```\n$ dpkg --get-selections >pkg-list\n```\n[1]" in got.answer  # renumbered: block 2 is now [1]
    assert got.citations[0].source == "/docs/file1.html" and "dpkg --get-selections" in got.citations[0].quote
    assert got.answer.startswith("Run this on the model machine:")


def test_a_claim_that_copies_a_command_is_quoted_where_the_command_is(embedder):
    """A small model's answer is often just the command: its quote is the unit that holds it (here the code
    line), never the sentence closest in meaning nor a heading."""
    checker = CitationChecker(embedder)
    got = checker.check("PRAGMA journal_mode=WAL; [1]", [candidate(WAL, 0, ("Write-Ahead Logging",))], attribute=True)
    assert got.grounded and got.citations[0].quotes == ("PRAGMA journal_mode=WAL;",)
    got = checker.check("Run apt-get dselect-upgrade [1].", [candidate(APT, 0)], attribute=True)
    assert got.citations[0].quote == "# apt-get dselect-upgrade"  # the code line as it is written
    got = checker.check("WAL mode is configured with a pragma [1].", [candidate(WAL, 0)], attribute=True)
    assert all(q != "Activating And Configuring WAL Mode" for c in got.citations for q in c.quotes)


def test_a_claim_is_cited_where_its_words_are_written_not_where_it_is_merely_close(embedder):
    """A small model often cites the first block for words it copied from the second: the citation goes to
    the block whose sentence holds the claim's words (found by the harness), not to one only close in meaning."""
    checker = CitationChecker(embedder)
    close = candidate("To enable a default firewall in Debian execute:\n\n# apt install -y nftables", 0)
    contexts = [close, candidate(FIREWALL, 1)]
    claim = ("To enable a default firewall in Debian, you need to store the rules in /etc/nftables.conf and "
             "execute systemctl enable nftables as root [1].")
    got = checker.check(claim, contexts, attribute=True)
    assert [c.source for c in got.citations] == ["/docs/file1.html"] and got.answer.endswith("[1]")
    assert "systemctl enable nftables" in got.citations[0].quote


def test_a_one_word_answer_is_a_claim_and_a_list_number_is_not():
    """"2 [1]" (a small model's answer to "how many ...") is checked like any claim; a list item's "1." is
    part of the sentence after it."""
    from service.citations import claim_spans

    assert [(c.text, c.cited) for c in claim_spans("2 [1]")] == [("2", (1,))]
    got = claim_spans("1. Run it [1].\n2. Done [2].\n\n```\nls -l\n```\n[2]")
    assert [(c.text, c.cited, c.code) for c in got] == [("Run it.", (1,), False), ("Done.", (2,), False),
                                                        ("ls -l", (2,), True)]
    assert got[0].start == 0  # the "1." goes with its sentence


FOOTNOTED = """Write-ahead logging is the default for new databases since version 9 [1][2][3][4][5].

To convert an existing database, use the following pragma:

PRAGMA journal_mode=WAL;"""


@pytest.mark.parametrize("name", ["passage", "sentence"])
def test_markers_written_in_a_document_are_never_citations(embedder, name):
    """A document's own footnote marks ("... version 9 [1][2][3][4][5].") are data: shown as plain text
    (full-width brackets), never renumbered into citations of other blocks, in every answerer."""
    from service import extractive

    contexts = [candidate(FOOTNOTED, 0), candidate(APT, 1), candidate(FIREWALL, 2), candidate(WAL, 3),
                candidate("Nothing relevant here at all.", 4)]
    answerer = extractive.build(name, embedder)
    got = answerer.extract("Is write-ahead logging the default for new databases?", contexts)
    assert got is not None and "［1］［2］［3］［4］［5］" in got.text
    if got.quotes:
        checked = CitationChecker.from_extract(got.text, [(q.n, q.text) for q in got.quotes], contexts)
    else:
        checked = CitationChecker(embedder).check(got.text, contexts)
    assert [c.source for c in checked.citations][:1] == ["/docs/file0.html"]
    assert len(checked.citations) <= 2 and "［1］" in checked.answer


def test_the_model_never_reads_a_documents_markers_as_markers():
    from service.conversations import Memory
    from service.prompts import build_prompt

    prompt = build_prompt("Is WAL the default?", [candidate(FOOTNOTED, 0)], Memory([], ""), context_window=4096,
                          answer_tokens=256)
    content = prompt.messages[-1]["content"]
    assert "version 9 ［1］［2］［3］［4］［5］." in content and "[1][2]" not in content


# the Debian New Maintainers' Guide in Japanese (maint-guide-ja, start.ja.html, section 1.4), as the parser renders it
ASK_JA = """公開の場で質問をすると決心する前に、以下に示す良くできた文書を読みましょう:

全ての関与するパッケージの
/usr/share/doc/package
中のファイル

全ての関与するコマンドの man
command の内容

debian-mentors@lists.debian.org
メーリングリストのアーカイブ の内容

site:lists.debian.org
のような検索文字列を含めてドメインを制約するようなことでウェブ検索エンジンをより効率的に利用することを考えましょう。

入手可能な文書やウェブのリソースからは答えを見つけられない疑問が残った場合には、インタラクティブに疑問を聞く事が出来ます:

debian-mentors@lists.debian.org
メーリングリスト。 (初心者向けメーリングリストです。)

#debian-mentors の様な IRC。"""


@pytest.mark.parametrize(("question", "venue"), [
    ("Where do beginners ask for help with packaging?", True),
    ("パッケージ作成の初心者はどこで質問すればいいですか？", True),
    ("打包新手应该到哪里求助？", True),
    ("Who can I contact about my account?", True),
    ("Where is the configuration file of the DHCP server?", False),
    ("Windowsユーザ向けのSambaの共有はどこで設定しますか？", False),
    ("NFS 服务器共享的目录列在哪个文件里？", False),
])
def test_where_to_ask_asks_for_a_place_to_ask_not_a_path(question, venue):
    focus = Focus.of(question)
    assert focus.venue is venue and focus.place is not venue
    mailing_list, path = units("debian-mentors@lists.debian.org メーリングリスト。")[0], units("/etc/exports")[0]
    assert focus.reward(mailing_list if venue else path) == 1.0
    assert focus.reward(path if venue else mailing_list) == 0.0


def test_where_to_ask_is_answered_with_the_mailing_list_not_a_path(answerer):
    """"どこで質問すれば" asked for a path before (どこ: where), and the answer quoted /usr/share/doc/package."""
    got = answerer.extract("パッケージ作成の初心者はどこで質問すればいいですか？",
                           [candidate(ASK_JA, 0, ("1.4. 助けを得るには",))])
    assert got is not None and "debian-mentors@lists.debian.org" in got.quotes[0].text
    assert "/usr/share/doc/package" not in got.quotes[0].text


# the Japanese handbook (sect.firewall-packet-filtering.html): section 14.2.3 is left in English
NFT_EN = ("The executed nft commands do not make permanent changes to the configuration, so they are lost if they "
          "are not saved. The firewall rules are located in /etc/nftables.conf. A simple way to save the current "
          "firewall configuration permanently is to execute nft list ruleset > /etc/nftables.conf as root.\n\n"
          "nft allows many more operations, refer to its manual page nft(8) for more information.")
NFT_JA = ("他の方法 (たとえば NetworkManager や systemd-networkd など) を使ってネットワークインターフェースを設定している場合、"
          "それぞれの文書を参照して、インターフェースを起動した後にスクリプトを実行する方法を見つけてください。")


@pytest.fixture(scope="module")
def multilingual():
    """The default embedder (e5 + MiniLM), on PyTorch: MiniLM alone does not read Japanese."""
    from index.embedders.factory import load_embedder

    return load_embedder("multilingual", backend="torch", threads=1)


@pytest.mark.parametrize("bilingual", [True, False])
def test_a_japanese_question_is_answered_from_an_untranslated_english_sentence(multilingual, bilingual):
    """"起動時に読み込まれるファイアウォールのルールはどのファイルに書きますか？": the file is named in a section the
    Japanese handbook leaves in English. Its loanwords (ファイアウォール, ルール, ファイル) name firewall, rule and
    file, which that sentence holds: with them it is quoted first; without, a Japanese sentence that shares the
    question's script but not its point is (both without the cross-script offset, tested below)."""
    question = "起動時に読み込まれるファイアウォールのルールはどのファイルに書きますか？"
    contexts = [candidate(NFT_EN, 0, ("14.2. ファイアウォールとパケットフィルタリング", "14.2.3. Syntax of nft")),
                candidate(NFT_JA, 1, ("14.2. ファイアウォールとパケットフィルタリング", "14.2.4. 起動時にルールを適用する"))]
    got = PassageAnswerer(multilingual, bilingual=bilingual, cross_script=0.0).extract(question, contexts)
    assert got is not None
    assert ("/etc/nftables.conf" in got.quotes[0].text) is bilingual


# the Chinese handbook (sect.apt-get.html, 6.2.4): the proxy setting is an English paragraph among Chinese ones
APT_PROXY_ZH = (
    '除了已提及的配置项目，还可在 /etc/apt/apt.conf.d/ 文件夹内增加 APT 的其他配置文件或编辑 /etc/apt/apt.conf 本身。让 APT '
    '告知 dpkg 忽略由 DPkg::options { "--force-overwrite"; } 引发的错误。\n\n'
    'If the Web can only be accessed through a proxy, add a line like Acquire::http::proxy "http://yourproxy:3128". '
    'For an FTP proxy, write Acquire::ftp::proxy "ftp://yourproxy". To discover more configuration options, read '
    'the apt.conf(5) manual page (for details on manual pages, see 第 7.1.1 节 “手册页面”).\n\n'
    "基础知识 结尾是 .d 的文件夹名称\n\n"
    "结尾是 .d 数据使用机会愈来愈多。每个文件夹内的配置档分为多个文件。所以，在 /etc/apt/apt.conf.d/ 内的文件都是供 APT 配置之用。")


@pytest.mark.parametrize("bilingual", [True, False])
def test_a_chinese_question_is_answered_from_an_english_paragraph_by_its_words_glosses(multilingual, bilingual):
    """"怎么让 apt 使用代理？": 代理's computing sense in CC-CEDICT is "proxy", which the English paragraph holds; with
    it the paragraph is quoted; without it the Chinese sentences (or nothing) are."""
    question = "公司只能通过代理上网，怎么让 apt 使用代理？"
    got = PassageAnswerer(multilingual, bilingual=bilingual, cross_script=0.0).extract(
        question, [candidate(APT_PROXY_ZH, 0, ("6.2. aptitude、apt-get和 apt 命令", "6.2.4. 配置选项"))])
    assert (got is not None and 'Acquire::http::proxy "http://yourproxy:3128"' in got.text) is bilingual


# the Japanese New Maintainers' Guide (upload.ja.html, 9.1): the command after the sentence that introduces it
UPLOAD_JA = (
    "正規デベロッパー[82]になると、パッケージを Debian\nアーカイブにアップロードできます。[83] 手動でもできますが、\n"
    "dupload(1) や dput(1)\n等の既存の自動化ツールを用いる方が楽です。\n\n"
    "まず dupload の設定ファイルを調整しなければいけません。\n\n"
    "インターネットにつながった状態で、以下のようにすればあなたのパッケージをアップロード出来ます:\n\n"
    "$ dupload gentoo_0.9.12-1_i386.changes\n\n"
    "dupload は各ファイルの SHA1/SHA256 チェックサムを計算し、\n.changes ファイルの中の情報と照合します。")


@pytest.mark.parametrize("share", [0.5, 0.0])
def test_a_unit_holds_a_share_of_the_words_of_the_unit_it_goes_on_from(multilingual, share):
    """The command that uploads shares none of the question's words; the sentence that introduces it does: with
    `context_words` the command is scored as holding that share of the sentence's words (its own words, by
    which the passage grows, stay its own)."""
    question = "完成したパッケージをアーカイブにアップロードするツールは？"
    contexts = [candidate(UPLOAD_JA, 0, ("第9章 パッケージをアップロードする", "9.1. Debian アーカイブへアップロードする"))]
    answerer = PassageAnswerer(multilingual, context_words=share)
    pool = answerer.pool([units(c.hit.chunk.text) for c in contexts])
    x, _ = answerer.features(question, contexts, pool)
    answerer.meaning.end()
    words = {s.unit.text: float(x[i, FEATURES.index("words")]) for i, s in enumerate(pool)}
    intro = next(t for t in words if t.startswith("インターネット"))
    command = "$ dupload gentoo_0.9.12-1_i386.changes"
    assert words[intro] > 0.2
    assert words[command] == pytest.approx(share * words[intro])
    assert next(s.words for s in pool if s.unit.text == command) == 0.0
    assert words[next(t for t in words if t.startswith("dupload は"))] == pytest.approx(0.0)  # it follows the command


def test_an_english_unit_gets_back_what_e5_takes_from_it_for_a_japanese_or_chinese_question(multilingual):
    """e5 rates a Japanese or Chinese question lower against English text than against its own script's: for such
    a question an English unit's similarity is raised by `cross_script` before the units are compared; the
    question's own script and an English question are left as they are."""
    contexts = [candidate(NFT_EN, 0), candidate(NFT_JA, 1)]

    def sims(question: str, offset: float) -> dict[str, float]:
        answerer = PassageAnswerer(multilingual, cross_script=offset)
        pool = answerer.pool([units(c.hit.chunk.text) for c in contexts])
        answerer.features(question, contexts, pool)
        answerer.meaning.end()
        return {s.unit.text: s.sim for s in pool if s.sim is not None}

    ja = "起動時に読み込まれるファイアウォールのルールはどのファイルに書きますか？"
    plain, raised = sims(ja, 0.0), sims(ja, 0.03)
    assert plain.keys() == raised.keys() and len(plain) >= 3
    for text, sim in plain.items():
        expected = sim + (0.0 if "インターフェース" in text else 0.03)
        assert raised[text] == pytest.approx(expected, abs=1e-6), text
    en = "Which file holds the firewall rules loaded at boot?"
    assert sims(en, 0.0) == pytest.approx(sims(en, 0.03))


def test_a_chinese_synonym_shares_a_question_word_through_the_dictionary():
    """账户 (the question) and 帐号 (the handbook, 8.5) are both "account" in CC-CEDICT: a unit that says 帐号
    holds the question's 账户; a Japanese question is not read this way, and bilingual=False turns it off."""
    unit = "设置新机器后管理者需做的第一件事就是添加用户帐号。"
    on = Wanted.of("创建新用户账户用什么命令？")
    assert "账户" in on.found(on.held(unit))
    off = Wanted.of("创建新用户账户用什么命令？", bilingual=False)
    assert "账户" not in off.found(off.held(unit))
    assert not Wanted.of("新しいユーザアカウントを作るコマンドは何ですか？").glossed
