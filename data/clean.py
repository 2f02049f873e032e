#!/usr/bin/env python3
"""Turn the extracted Debian dictionary / bible files into plain-text corpora.

Output: one document per line (a dictionary entry, or one bible chapter), whitespace collapsed.
Only the Python standard library is used.

Usage: clean.py EXTRACT_DIR OUT_DIR
  EXTRACT_DIR holds usr/share/dictd/{gcide,jargon,foldoc}.dict.dz and bible.txt (the `bible` dump).
  Writes OUT_DIR/train.txt (gcide + jargon + bible-kjv) and OUT_DIR/heldout.txt (foldoc).
"""
import gzip
import html.parser
import os
import random
import re
import sys

WS = re.compile(r"\s+")


def collapse(s):
    return WS.sub(" ", s).strip()


def dict_entries(path):
    """Yield (headword_line, body_lines) of a dictd .dict.dz file (entries start in column 0)."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    cur = None
    for ln in lines:
        if ln and not ln[0].isspace():
            if cur is not None:
                yield cur
            cur = [ln, []]
        elif cur is not None:
            cur[1].append(ln)
    if cur is not None:
        yield cur


def skip_head(head):
    return head.startswith("00-database") or head.startswith("00database") or head.startswith("http")


GCIDE_PRON = re.compile(r"\\[^\\\n]{0,80}\\")           # \Ab"a*ca\
GCIDE_PAREN = re.compile(r"\(\[[^()]{0,80}\)")            # ([a^]b"[.a]*k[.a])
GCIDE_SRC = re.compile(r"\[(?:[^\[\]]*(?:Webster|PJC|WordNet|Century|Suppl|Johnson|Note)[^\[\]]*)\]")
GCIDE_CODE = re.compile(r"\[[^\[\]\s]{1,5}\]")             # [=a] [^] ['e] inside words
BRACES = re.compile(r"[{}]")


def clean_gcide(head, body):
    text = head + " " + " ".join(body)
    text = GCIDE_PRON.sub("", text)
    text = GCIDE_PAREN.sub("", text)
    text = GCIDE_SRC.sub("", text)
    text = GCIDE_CODE.sub("", text)
    text = BRACES.sub("", text)
    text = text.replace("--", " -- ")
    return collapse(text)


def clean_jargon_foldoc(head, body):
    text = head.strip() + ": " + " ".join(body)
    text = BRACES.sub("", text)
    text = re.sub(r"<([a-z ,]+)>", r"(\1)", text)  # <introduction> -> (introduction)
    return collapse(text)


def dict_docs(path, cleaner, min_chars=40):
    for head, body in dict_entries(path):
        if skip_head(head):
            continue
        doc = cleaner(head, body)
        if len(doc) >= min_chars:
            yield doc


def bible_docs(path):
    """`bible -f gen1:1-rev22:21` prints 'Ge1:1 text' lines; group verses by chapter."""
    ref = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")
    chap, verses = None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for ln in f:
            m = ref.match(ln.rstrip("\n"))
            if not m:
                continue
            key = (m.group(1), m.group(2))
            if key != chap and verses:
                yield collapse(" ".join(verses))
                verses = []
            chap = key
            verses.append(m.group(4))
    if verses:
        yield collapse(" ".join(verses))


# ---------------------------------------------------------------------------------------------
# Varied text: reStructuredText (kernel and Python docs), roff (man pages), Texinfo info files,
# fortune files and HTML books. Each cleaner keeps prose and drops code, tables and markup.

LETTERS = re.compile(r"[A-Za-z]")


def prose_ratio(s):
    """Fraction of the non-space characters of s that are ASCII letters."""
    t = s.replace(" ", "")
    return len(LETTERS.findall(t)) / len(t) if t else 0.0


def keep_doc(doc, min_chars=200, min_ratio=0.6):
    return len(doc) >= min_chars and prose_ratio(doc) >= min_ratio


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def files_under(top, suffix, exclude=()):
    """Sorted relative paths under top ending in suffix, skipping those with an excluded part."""
    out = []
    for d, dirs, names in os.walk(top):
        dirs.sort()
        for n in names:
            rel = os.path.relpath(os.path.join(d, n), top)
            if rel.endswith(suffix) and not any(x in rel for x in exclude):
                out.append(rel)
    return sorted(out)


# --- reStructuredText ---
RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([A-Za-z0-9_:-]+)::(.*)$")
RST_COMMENT = re.compile(r"^(\s*)\.\.(\s|$)")
RST_ADORN = re.compile(r"^\s*([=\-~^\"'`#*+_:.<>])\1{2,}\s*$")
RST_SIMPLE_TABLE = re.compile(r"^\s*=+(\s+=+)+\s*$")
RST_GRID = re.compile(r"^\s*[+|].*[+|]\s*$")
RST_FIELD = re.compile(r"^\s*:[A-Za-z][A-Za-z0-9 _-]*:(\s|$)")
# Directives whose whole block is code, a table, an include or navigation: dropped. Any other
# directive (note, warning, function, class, ...) loses its own line and keeps its body.
RST_DROP = {
    "code", "code-block", "sourcecode", "literalinclude", "include", "toctree", "kernel-doc",
    "kernel-abi", "kernel-feat", "kernel-include", "image", "figure", "raw", "highlight",
    "doctest", "testcode", "testoutput", "testsetup", "testcleanup", "productionlist", "math",
    "csv-table", "list-table", "flat-table", "table", "tabularcolumns", "graphviz", "index",
    "contents", "sectionauthor", "moduleauthor", "audit-event", "only", "program-output",
    "cssclass", "rst-class", "parsed-literal", "literal", "c:namespace", "cpp:namespace",
    "c:namespace-push", "c:namespace-pop", "autosummary", "automodule", "autoclass", "ifconfig",
    "impl-detail", "availability", "opcode", "pdbcommand", "describe", "productionlist",
    "compound", "container", "csv", "SPDX-License-Identifier",
}
RST_ROLE = re.compile(r":[A-Za-z0-9_:+-]+:`([^`]*)`")
RST_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?")
RST_REF = re.compile(r"`([^`]+)`__?")
RST_LITERAL = re.compile(r"``([^`]+)``")
RST_EMPH = re.compile(r"\*\*?([^*\s][^*]*?)\*\*?")
RST_SUBST = re.compile(r"\|([^|\s][^|]*)\|")
RST_FOOT = re.compile(r"\s*\[(?:#[A-Za-z0-9_-]*|\*|\d+)\]_")


def indent_of(ln):
    return len(ln) - len(ln.lstrip())


def rst_inline(s):
    s = RST_ROLE.sub(lambda m: re.sub(r"\s*<[^>]*>$", "", m.group(1)).lstrip("~!"), s)
    s = RST_LINK.sub(r"\1", s)
    s = RST_LITERAL.sub(r"\1", s)
    s = RST_REF.sub(r"\1", s)
    s = RST_FOOT.sub("", s)
    s = RST_EMPH.sub(r"\1", s)
    s = RST_SUBST.sub(r"\1", s)
    return s


def clean_rst(text):
    """Prose lines of an .rst file, code blocks, tables and directives removed, as one string."""
    lines = text.expandtabs(8).split("\n")
    out = []
    skip_above = None   # skip lines indented more than this (a dropped block)
    in_table = False
    literal_next = False
    last_indent = 0
    i = 0
    while i < len(lines):
        ln = lines[i]
        i += 1
        st = ln.strip()
        if skip_above is not None:
            if not st or indent_of(ln) > skip_above:
                continue
            skip_above = None
        if in_table:
            if RST_SIMPLE_TABLE.match(ln) and (i >= len(lines) or not lines[i].strip()):
                in_table = False
            continue
        if not st:
            continue
        ind = indent_of(ln)
        if literal_next:
            literal_next = False
            if ind > last_indent:     # the indented literal block after '::'
                skip_above = last_indent
                continue
        m = RST_DIRECTIVE.match(ln)
        if m:
            name = m.group(2)
            if name in RST_DROP or name.endswith(("table", "include")):
                skip_above = ind
            else:  # keep the body, skip the directive's option lines
                while i < len(lines) and RST_FIELD.match(lines[i]) and indent_of(lines[i]) > ind:
                    i += 1
            continue
        if RST_COMMENT.match(ln):   # comments, link targets, substitution definitions
            skip_above = ind
            continue
        if RST_SIMPLE_TABLE.match(ln):
            in_table = True
            continue
        if RST_ADORN.match(ln) or RST_GRID.match(ln) or RST_FIELD.match(ln):
            continue
        if st.startswith((">>>", "...", "$ ", "# ")):
            continue
        last_indent = ind
        if st.endswith("::"):
            literal_next = True
            st = st[:-2].rstrip()
            if st.endswith(":"):
                st = st[:-1]
            if not st:
                continue
            st += ":"
        out.append(st)
    text = rst_inline(" ".join(s for s in out if prose_ratio(s) >= 0.5))
    return collapse(text.replace("\\*", "*").replace("\\_", "_"))


def rst_docs(top, suffix, exclude=()):
    for rel in files_under(top, suffix, exclude):
        doc = clean_rst(read_text(os.path.join(top, rel)))
        if keep_doc(doc):
            yield doc


# --- roff man pages ---
ROFF_FONT = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)")
ROFF_NAMED = {"em": " -- ", "en": "-", "lq": '"', "rq": '"', "aq": "'", "dq": '"', "oq": "'",
              "cq": "'", "bu": "*", "ti": "~", "ha": "^", "rs": "\\", "mc": "\u00b5",
              "co": "(C)", "rg": "(R)", "tm": "(TM)", "mu": "x", "+-": "+/-", "<=": "<=",
              ">=": ">=", "->": "->", "<-": "<-", "!=": "!=", "hy": "-", "ga": "`", "at": "@",
              "sh": "#", "Do": "$", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "ba": "|",
              "or": "|", "sl": "/", "pc": ".", "de": " degrees"}
ROFF_CHAR = re.compile(r"\\(?:\(([^\s]{2})|\[([^\]\s]+)\])")
ROFF_STR = re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)")
ROFF_ESC = re.compile(r"\\[&:|^%c]|\\[hvwsHVSkzxoLlNbDR](?:'[^']*'|\[[^\]]*\]|[-+]?\d+|.)?")
ROFF_ALT = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB"}
ROFF_SKIP_SECTIONS = {"SYNOPSIS", "SEE ALSO", "COLOPHON"}


def roff_args(rest):
    """Macro arguments, double quotes handled."""
    return [m.group(1) if m.group(1) is not None else m.group(2)
            for m in re.finditer(r'"([^"]*)"|(\S+)', rest)]


def roff_text(s):
    s = ROFF_FONT.sub("", s)
    s = ROFF_CHAR.sub(lambda m: ROFF_NAMED.get(m.group(1) or m.group(2), " "), s)
    s = ROFF_STR.sub("", s)
    s = s.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ").replace("\\~", " ")
    s = s.replace("\\0", " ").replace("\\(", "(").replace("\\.", ".").replace("\\'", "'")
    s = ROFF_ESC.sub("", s)
    return s.replace("\\", "")


def clean_roff(text):
    out = []
    skip_until = None   # '.fi', '.EE', '.TE' or '.de' blocks
    skip_section = False
    for ln in text.split("\n"):
        if skip_until is not None:
            if ln.startswith(skip_until):
                skip_until = None
            continue
        if ln.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if ln.startswith((".", "'")):
            parts = ln[1:].strip().split(None, 1)
            if not parts:
                continue
            mac, rest = parts[0], (parts[1] if len(parts) > 1 else "")
            if mac in ("nf", "EX"):
                skip_until = ".fi" if mac == "nf" else ".EE"
            elif mac == "TS":
                skip_until = ".TE"
            elif mac in ("de", "ig"):
                skip_until = ".."
            elif mac in ("SH", "SS"):
                title = roff_text(" ".join(roff_args(rest)))
                skip_section = title.upper() in ROFF_SKIP_SECTIONS
                if not skip_section:
                    out.append(title.capitalize() + ".")
            elif mac in ROFF_ALT and not skip_section:
                out.append(roff_text("".join(roff_args(rest))))
            continue
        if not skip_section:
            out.append(roff_text(ln))
    return collapse(" ".join(out))


def man_docs(top):
    for rel in files_under(top, ".gz"):
        text = read_text(os.path.join(top, rel))
        if text.lstrip().startswith(".so "):   # a link to another page
            continue
        doc = clean_roff(text)
        if keep_doc(doc):
            yield doc


# --- Texinfo info files: one document per node ---
INFO_NOTE = re.compile(r"\*[Nn]ote\s+([^:]*?)::?(?:\s*\([^)]*\)[^.,]*)?[.,]?", re.S)


def info_docs(path):
    for node in read_text(path).split("\x1f")[1:]:
        lines = node.split("\n")
        if not lines or not lines[1:] or not lines[1].startswith("File:"):
            continue
        out, in_menu = [], False
        for ln in lines[2:]:
            st = ln.strip()
            if st.startswith("* Menu:"):
                in_menu = True
                continue
            if in_menu and (not st or st.startswith("* ")):
                continue
            in_menu = False
            if not st or RST_ADORN.match(ln) or indent_of(ln) >= 5:   # examples are indented
                continue
            out.append(st)
        doc = collapse(INFO_NOTE.sub(r"\1", " ".join(out)))
        if keep_doc(doc):
            yield doc


# --- fortune files: one document per fortune ---
def fortune_docs(top, exclude=("ascii-art",)):
    for name in sorted(os.listdir(top)):
        path = os.path.join(top, name)
        if "." in name or name in exclude or not os.path.isfile(path):
            continue
        for fort in re.split(r"\n%\n", read_text(path)):
            doc = collapse(re.sub(r".\x08", "", fort))
            if keep_doc(doc, min_chars=60, min_ratio=0.7):
                yield doc


# --- HTML books (DocBook / Publican output): one document per page ---
class ProseHTML(html.parser.HTMLParser):
    SKIP_TAGS = {"head", "script", "style", "pre", "table"}
    SKIP_CLASSES = {"docnav", "toc", "indexterm", "navheader", "navfooter", "list-of-tables",
                    "list-of-examples", "list-of-figures", "screen", "programlisting",
                    "index", "breadcrumbs", "legalnotice"}
    VOID = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []   # (tag, skipping) per open element
        self.parts = []

    def skipping(self):
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            self.parts.append(" ")
            return
        cls = set((dict(attrs).get("class") or "").split())
        skip = self.skipping() or tag in self.SKIP_TAGS or bool(cls & self.SKIP_CLASSES)
        self.stack.append((tag, skip))
        if tag in ("p", "div", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "td", "title"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                del self.stack[k:]
                break
        if tag in ("h1", "h2", "h3", "h4", "h5", "dt"):
            self.parts.append(".\n")
        elif tag in ("p", "div", "li", "dd"):
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping():
            self.parts.append(data)


def clean_html(text):
    p = ProseHTML()
    p.feed(text)
    p.close()
    blocks = [collapse(b) for b in "".join(p.parts).split("\n")]
    blocks = [b.replace("..", ".") for b in blocks if len(b) > 1 and prose_ratio(b) >= 0.5]
    return collapse(" ".join(b for b in blocks if b != "."))


def html_docs(top, names):
    for rel in names:
        doc = clean_html(read_text(os.path.join(top, rel)))
        if keep_doc(doc):
            yield doc


def varied_sources(src):
    """(name, documents) of the extra training text, in a fixed order."""
    kdoc = os.path.join(src, "usr/share/doc/linux-doc-6.1/Documentation")
    pydoc = os.path.join(src, "usr/share/doc/python3.11/html/_sources")
    gnu = os.path.join(src, "usr/share/info")
    return (
        ("linux-doc", rst_docs(kdoc, ".rst.gz", exclude=("translations/",))),
        ("python-doc", rst_docs(pydoc, ".rst.txt", exclude=("whatsnew/changelog",))),
        ("manpages", man_docs(os.path.join(src, "usr/share/man"))),
        ("gnu-standards", (d for f in ("standards.info.gz", "maintain.info.gz")
                           for d in info_docs(os.path.join(gnu, f)))),
        ("fortunes", fortune_docs(os.path.join(src, "usr/share/games/fortunes"))),
    )


def heldout2_sources(src):
    """(name, documents) of the second held-out text: Debian's two system-administration books."""
    hb = os.path.join(src, "usr/share/doc/debian-handbook/html/en-US")
    ref = os.path.join(src, "usr/share/debian-reference")
    return (
        ("debian-handbook", html_docs(hb, sorted(n for n in os.listdir(hb) if n.endswith(".html")))),
        ("debian-reference", html_docs(ref, sorted(n for n in os.listdir(ref)
                                                    if n.endswith(".en.html")))),
    )


def haystack_docs(heldout_path, every=5):
    """Every `every`-th foldoc entry of heldout.txt (alphabetical spread, about 1 MB)."""
    with open(heldout_path, encoding="utf-8") as f:
        return [ln for k, ln in enumerate(f) if k % every == 0]


SHUFFLE_SEED = 20230610


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    dd = os.path.join(src, "usr/share/dictd")
    n = {}
    with open(os.path.join(out, "train.txt"), "w", encoding="utf-8") as f:
        for name, gen in (
            ("gcide", dict_docs(os.path.join(dd, "gcide.dict.dz"), clean_gcide)),
            ("jargon", dict_docs(os.path.join(dd, "jargon.dict.dz"), clean_jargon_foldoc)),
            ("bible-kjv", bible_docs(os.path.join(src, "bible.txt"))),
        ):
            n[name] = 0
            for doc in gen:
                f.write(doc + "\n")
                n[name] += 1
    with open(os.path.join(out, "heldout.txt"), "w", encoding="utf-8") as f:
        n["foldoc"] = 0
        for doc in dict_docs(os.path.join(dd, "foldoc.dict.dz"), clean_jargon_foldoc):
            f.write(doc + "\n")
            n["foldoc"] += 1
    # train-varied.txt: the train.txt documents plus the varied ones, shuffled with a fixed seed.
    with open(os.path.join(out, "train.txt"), encoding="utf-8") as f:
        docs = f.read().split("\n")[:-1]
    for name, gen in varied_sources(src):
        new = list(gen)
        n[name] = len(new)
        docs.extend(new)
    random.Random(SHUFFLE_SEED).shuffle(docs)
    with open(os.path.join(out, "train-varied.txt"), "w", encoding="utf-8") as f:
        f.writelines(d + "\n" for d in docs)
    with open(os.path.join(out, "heldout2.txt"), "w", encoding="utf-8") as f:
        for name, gen in heldout2_sources(src):
            n[name] = 0
            for doc in gen:
                f.write(doc + "\n")
                n[name] += 1
    hay = haystack_docs(os.path.join(out, "heldout.txt"))
    with open(os.path.join(out, "haystack.txt"), "w", encoding="utf-8") as f:
        f.writelines(hay)
    n["haystack (foldoc)"] = len(hay)
    for k, v in n.items():
        print(f"{k}: {v} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
