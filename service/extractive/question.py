"""What a question asks: its content words, and its focus (a command, a place, a number), in English,
Japanese and Chinese; the passage answerer rewards the units that hold what the focus asks for."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from index.bilingual import by_glosses, english_words, gloss_words
from index.keyword import stem, terms
from index.text import mostly_cjk
from service.extractive.units import Unit

_COMMAND_Q = re.compile(
    r"\b(?:how (?:do|can|could|should|would|to|does)|(?:what|which) (?:commands?|tools?|programs?|utilit(?:y|ies))"
    r"|command)\b|方法|コマンド|どう(?:すれば|やって|したら|します)|どう\w{1,6}(?:すれば|したら)|ツール|には[？?]?$"
    r"|怎么|怎样|如何|命令|用什么|工具", re.I)
_PLACE_Q = re.compile(r"\b(?:which|what)(?: (?:is|are|does|do))?(?: the| a| an)?(?: [\w-]+){0,2}"
                      r" (?:file|directory|folder|path)s?\b"
                      r"|\bwhere\b"
                      r"|どの(?:ファイル|ディレクトリ)|(?:ファイル|ディレクトリ)は(?:どこ|何|どれ|[？?]?$)|どこ"
                      r"|哪个(?:文件|目录)|什么文件|(?:文件|目录)是哪|哪里|在哪", re.I)
_QUANTITY_Q = re.compile(
    r"\bhow (?:many|much|often|long|large|big|old|fast)\b|\bwhat (?:\w+ )?(?:size|priority|number|percentage|port|"
    r"version|limit|value)\b|\b(?:maximum|minimum|default (?:value|size|priority))\b"
    r"|いくつ|いくら|何[日回時個件年月人]|どのくらい|どれくらい|頻度|優先度"
    r"|多少|几[个天次]|多久|多长|多大|优先级|频率", re.I)
# "where do I ask ...", "who can I contact": a place to ask (a mailing list, an address, a channel), not a path
_VENUE_Q = re.compile(
    r"\bwhere (?:do|can|should|could|would) (?:i|we|you|\w+) (?:ask|get help|find help|report|discuss|contact|turn)"
    r"|\bwho (?:do|can|should|could) (?:i|we) (?:ask|contact|talk to)\b|\bwhom to (?:ask|contact)\b"
    r"|どこ(?:で|に)(?:質問|相談|聞|訊|尋ね|報告|問い合わせ)|誰に(?:質問|相談|聞|訊|尋ね|問い合わせ)"
    r"|(?:哪里|哪儿)(?:求助|提问|问|咨询|讨论|反馈)|向谁(?:求助|咨询|问|提问)|找谁", re.I)
VENUE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+|https?://\S+|\bmailing[ -]lists?\b|\bIRC\b|(?:^|\s)#[a-z][\w-]+"
                   r"|\bforums?\b|メーリングリスト|フォーラム|邮件列表|论坛", re.I)
NUMBER = re.compile(r"\d|[一二三四五六七八九十两百千万]")
PATH = re.compile(r"(?:^|[\s(“\"'])~?\.?/[\w.-]+(?:/[\w.*-]*)*|\b[\w-]+\.(?:conf|cfg|list|ini|d|xml|json|ya?ml|sh)\b")
COMMANDISH = re.compile(
    r"(?:^|\s)(?:--?[A-Za-z][\w-]*|[a-z][a-z0-9]*(?:[-_][a-z0-9]+)+|\w+(?:::|=)\S*)(?=[\s.,;:)]|$)"
    r"|\b[a-z][\w.+-]* (?:command|program|tool|utility|script)s?\b"
    r"|\b(?:run|running|execute|executing|invoke|invoking|type|typing|with|via|using) (?!the\b|a\b|an\b)[a-z][\w.+-]*"
    r" [\w./-]+"
    # a Latin word (and its argument, or a placeholder of a few ideographs or katakana: "apt purge软件包命令") before
    # "command", "run", "use": ASCII only, so that "Apache は常に ... 証明書を使う" is not taken for a command
    r"|(?<![A-Za-z0-9])[a-z][A-Za-z0-9.+_-]*(?: [A-Za-z0-9./_-]+| ?[\u4e00-\u9fff\u30a0-\u30ff]{1,4})? ?"
    r"(?:コマンド|を実行|を使|を用い|命令|工具|程序)"
    r"|(?:运行|执行|使用|用|输入|実行) ?(?:命令|コマンド)?[：:]? ?[a-z][\w.+-]*"
    r"|(?:命令|コマンド)[：:]? ?[a-z][\w.+-]*(?=[\s。，；）、]|$)"  # "使用命令 reportbug 来发送", "命令 reportbug"
    # a lower-case Latin word after a full-width colon in Japanese or Chinese prose: "执行命令：at now + number period"
    r"|：\s?[a-z][\w.+-]*(?= [\w./+-]|[\s。，；）]|$)")
_FILLER = frozenset(
    "command commands tool tools file files use using make get way want need find out run tell set up there any "
    "one new know see thing things our my someone anyone possible able "
    "方法 コマンド ファイル どう する すれ いい よい ある いる なる ください 場合 できる 使う "
    "何 どの どれ どこ いつ よう もの こと ため 上げる 作る 知り たい "
    "命令 文件 怎么 怎样 如何 什么 用 哪个 哪里 多少 应该 可以 要 我 能 吗 一个".split())


_SHORT_KANA = re.compile(r"[\u3040-\u309f]{1,2}")


def stems(text: str) -> set[str]:
    """The stems of all the text's words (stop words too): what a unit or a heading holds."""
    return {stem(t) for t in terms(text)}


def question_terms(question: str) -> set[str]:
    """The question's content words, stemmed: no stop words, no question filler ("command", "方法"), no
    one- or two-letter hiragana left over from a verb's inflection. English stop words only in an English
    question: a Latin word in a Japanese or Chinese one is a name ("atで予約したジョブ": the at command)."""
    latin_stop = not mostly_cjk(question)
    return {stem(t) for t in terms(question, drop_stopwords=latin_stop)
            if t not in _FILLER and not _SHORT_KANA.fullmatch(t)}


_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Wanted:
    """The question's content words (`question_terms`), each with the stems of its English words when the question
    is in Japanese or Chinese (index/bilingual.py: "アップグレード" -> upgra, "防火墙" -> firew): a unit holds the word
    when it holds it or one of them, so that a manual's untranslated English sentence can share the question's
    words."""
    terms: frozenset[str]
    english: Mapping[str, frozenset[str]] = field(default_factory=dict)
    glossed: bool = False  # a Chinese question: a unit's Chinese words count by their English words too (`held`)

    @classmethod
    def of(cls, question: str, *, bilingual: bool = True) -> Wanted:
        """The words of a question: remembered, since the reranker and the answerer's steps each ask for them."""
        return _wanted(question, bilingual)

    def found(self, held: set[str] | frozenset[str]) -> set[str]:
        """The question's words that a unit holding these stems holds."""
        return {t for t in self.terms if t in held or not self.english.get(t, _NONE).isdisjoint(held)}

    def held(self, text: str) -> set[str]:
        """The stems a unit holds, for `found`: its words and, for a Chinese question, the English words of its
        Chinese words (index/bilingual.gloss_words), so that a synonym shares a dictionary word with the
        question's ("创建新用户账户" against "添加用户帐号": account)."""
        own = stems(text)
        if self.glossed:
            own |= {stem(w) for w in gloss_words(text)}
        return own

    def __len__(self) -> int:
        return len(self.terms)


@lru_cache(maxsize=256)
def _wanted(question: str, bilingual: bool) -> Wanted:
    want = frozenset(question_terms(question))
    english = {t: frozenset(stem(e) for e in es) for t, es in english_words(question).items() if t in want} \
        if bilingual else {}
    return Wanted(want, english, glossed=bool(english) and by_glosses(question))


@dataclass(frozen=True)
class Focus:
    command: bool
    place: bool
    quantity: bool
    venue: bool = False  # a place to ask: a mailing list, an address, a channel ("where do I ask ...")

    @classmethod
    def of(cls, question: str) -> Focus:
        quantity = bool(_QUANTITY_Q.search(question))
        venue = bool(_VENUE_Q.search(question))
        place = bool(_PLACE_Q.search(question)) and not venue
        return cls(bool(_COMMAND_Q.search(question)) and not quantity and not place and not venue, place, quantity,
                   venue)

    @property
    def asks(self) -> bool:
        """Whether the question asks for a kind of thing (a command, a place, a number, a place to ask)."""
        return self.command or self.place or self.quantity or self.venue

    def reward(self, unit: Unit) -> float:
        text = unit.text
        r = 0.0
        if self.command:
            r = max(r, 1.0 if unit.kind == "code" else 0.6 if COMMANDISH.search(text) else 0.0)
        if self.place:
            r = max(r, 1.0 if PATH.search(text) else 0.0)
        if self.quantity:
            r = max(r, 1.0 if NUMBER.search(text) else 0.0)
        if self.venue:
            r = max(r, 1.0 if VENUE.search(text) else 0.0)
        return r
