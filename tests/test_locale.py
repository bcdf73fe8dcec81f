"""The catalogs directcall ships (directcall/locale): every text of the call screens and
the call button translated in each shipped language, the compiled .mo files current, the
screens served in the language asked for, right to left in Arabic."""

from __future__ import annotations

import ast
import gettext
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.utils import translation

from directcall.screen_strings import SCREEN_STRINGS

PACKAGE = Path(__file__).resolve().parent.parent / "directcall"
LOCALE = PACKAGE / "locale"
SHIPPED = ("es", "hi", "ar")
# The contexts of the texts a caller or callee sees (screens and call button).
CONTEXTS = ("call screen", "call button")


def msgfmt() -> str:
    path = shutil.which("msgfmt")
    if path is None:
        pytest.fail("msgfmt is needed (Debian: apt-get install gettext; scripts/test.sh does)")
    return path


def po_path(language: str) -> Path:
    return LOCALE / language / "LC_MESSAGES" / "django.po"


def read_po(path: Path) -> dict[tuple[str | None, str], tuple[str, set[str]]]:
    """``{(msgctxt, msgid): (msgstr, flags)}`` of a .po file (singular entries)."""
    entries = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        flags: set[str] = set()
        current = None
        for line in block.splitlines():
            if line.startswith("#,"):
                flags |= {flag.strip() for flag in line[2:].split(",")}
            elif line.startswith("#"):
                continue
            elif line.startswith('"') and current:
                fields[current] += ast.literal_eval(line)
            else:
                keyword, _, value = line.partition(" ")
                current = keyword
                fields[keyword] = ast.literal_eval(value)
        if fields.get("msgid"):
            key = (fields.get("msgctxt"), fields["msgid"])
            entries[key] = (fields.get("msgstr", ""), flags)
    return entries


def template_texts() -> set[tuple[str, str]]:
    """The ``{% translate "..." context "..." %}`` texts of the screens' template."""
    html = (PACKAGE / "templates" / "directcall" / "screens.html").read_text()
    found = re.findall(r"""{% translate (["'])(.+?)\1 context (["'])(.+?)\3 %}""", html)
    return {(context, text) for _, text, _, context in found}


def screen_texts() -> set[tuple[str, str]]:
    """Every text of the screens and the call button, as ``(context, msgid)``."""
    with translation.override(None):  # no catalog at all: the msgids themselves
        texts = {("call screen", str(text)) for text in SCREEN_STRINGS.values()}
    texts |= template_texts()
    button = ["Call", "Call %(name)s", "%(label)s (%(name)s)", "Offline", "In a call"]
    button.append("Unavailable")
    return texts | {("call button", text) for text in button}


def test_every_text_of_the_screens_is_in_the_catalogs_and_translated():
    texts = screen_texts()
    assert len(texts) > 30 and template_texts()
    for language in SHIPPED:
        catalog = read_po(po_path(language))
        missing = sorted(t for t in texts if t not in catalog)
        assert not missing, f"{language}: run scripts/messages.sh; missing {missing}"
        untranslated = sorted(t for t in texts if not catalog[t][0] or "fuzzy" in catalog[t][1])
        assert not untranslated, f"{language}: untranslated or fuzzy: {untranslated}"


def test_no_text_of_another_context_is_translated_by_accident():
    # A screen text with a context of its own is looked up with it: the catalogs hold no
    # context-less "Cancel" that a host's catalog could clash with.
    for language in SHIPPED:
        contexts = {context for context, _ in read_po(po_path(language))}
        assert set(CONTEXTS) <= contexts


def test_placeholders_and_format_are_checked_by_msgfmt(tmp_path):
    for language in SHIPPED:
        result = subprocess.run(
            [msgfmt(), "--check", "-o", str(tmp_path / f"{language}.mo"), str(po_path(language))],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def test_the_compiled_catalogs_are_those_of_the_po_files(tmp_path):
    for language in SHIPPED:
        fresh = tmp_path / f"{language}.mo"
        subprocess.run([msgfmt(), "-o", str(fresh), str(po_path(language))], check=True)
        shipped = po_path(language).with_suffix(".mo")
        assert shipped.exists(), f"{shipped} missing: run scripts/messages.sh compile"
        with fresh.open("rb") as a, shipped.open("rb") as b:
            made, committed = (
                gettext.GNUTranslations(a)._catalog,
                gettext.GNUTranslations(b)._catalog,
            )
        assert made == committed, f"{shipped} is not {po_path(language)}: run scripts/messages.sh"


@pytest.mark.parametrize("language", SHIPPED)
def test_accessible_names_start_with_the_visible_text(language):
    # WCAG 2.5.3 (label in name), in every language: a voice user says what they see.
    pairs = [
        ("Answer", "answerLabel"),
        ("Decline", "declineLabel"),
        ("Cancel", "cancelLabel"),
        ("Hang up", "hangupLabel"),
        ("Mute", "muteLabel"),
        ("Unmute", "unmuteLabel"),
    ]
    with translation.override(language):
        for visible, label in pairs:
            shown = translation.pgettext("call screen", visible)
            named = str(SCREEN_STRINGS[label])
            assert shown != visible or language == "en"
            assert named.startswith(shown), (language, shown, named)
        call = translation.pgettext("call button", "Call")
        assert (translation.pgettext("call button", "Call %(name)s") % {"name": "X"}).startswith(
            call
        )


@pytest.mark.parametrize(
    ("asked", "language", "direction", "answer"),
    [
        ("ar", "ar", "rtl", "رد"),
        ("es-MX", "es-mx", "ltr", "Contestar"),
        ("hi", "hi", "ltr", "उत्तर दें"),
        ("xx", "en-us", "ltr", "Answer"),
        ("", "en-us", "ltr", "Answer"),
        ("<script>", "en-us", "ltr", "Answer"),
    ],
)
def test_the_screens_are_served_in_the_language_asked_for(
    client, asked, language, direction, answer
):
    response = client.get("/directcall/v1/screens", {"lang": asked})
    assert response.status_code == 200
    assert response["Content-Language"] == language
    html = response.content.decode()
    assert f'lang="{language}" dir="{direction}"' in html
    assert f'data-action="answer">{answer}</button>' in html
    strings = re.search(r"data-directcall-strings>(.*?)</script>", html).group(1)
    with translation.override(language):
        assert translation.pgettext("call screen", "Calling…") in strings
