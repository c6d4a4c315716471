"""English words for Japanese and Chinese questions (index/bilingual.py), from unidic's lemmas and CC-CEDICT."""

from __future__ import annotations

from index.bilingual import chinese_glosses, english_words, loanword_sources
from index.keyword import query_terms


def test_a_japanese_loanword_names_its_english_source():
    got = loanword_sources("アップグレードのときに安定版がテスト版に切り替わらないようにするには？")
    assert got == {"アップグレード": "upgrade", "テスト": "test"}  # 安定 is not a loanword: no English word
    assert loanword_sources("起動時に読み込まれるファイアウォールのルールはどのファイルに書きますか？") == {
        "ファイアウォール": "firewall", "ルール": "rule", "ファイル": "file"}
    # "ログイン" is cut into ログ-log and イン-in: a stop word is no source
    assert loanword_sources("パスワードなしでログインできるよう") == {"ログ": "log"}
    assert loanword_sources("How do I enable WAL mode?") == {} == loanword_sources("怎么查看日志？")


def test_a_chinese_word_has_its_dictionary_glosses_a_computing_sense_first():
    assert "firewall" in chinese_glosses("防火墙")
    assert chinese_glosses("代理") == {"proxy"}  # not "to act on behalf of sb in a responsible position"
    assert {"log", "journal"} <= chinese_glosses("日志")
    assert chinese_glosses("防火牆") == chinese_glosses("防火墙")  # traditional characters too
    assert chinese_glosses("不是一个词语") == frozenset()
    got = english_words("怎么查看某个 systemd 服务的日志？")
    assert {"log", "journal"} <= got["日志"] and "service" in got["服务"]
    assert "systemd" not in got and all(len(w) >= 2 for w in got)  # Latin words and single characters: none


def test_the_keyword_query_takes_a_loanwords_english_source_not_a_chinese_words_glosses():
    ja = query_terms("社内ではプロキシ経由でしかWebに出られません。aptにプロキシを設定する方法は？")
    assert "proxy" in ja and ja.count("proxy") == 1
    zh = query_terms("公司只能通过代理上网，怎么让 apt 使用代理？")
    assert "proxy" not in zh and "apt" in zh
    assert query_terms("How do I set an apt proxy?") == ["set", "apt", "proxy"]
    assert "proxy" not in query_terms("プロキシを設定する方法は？", analyzer="bigram")  # the analyzer's own terms only
