"""Masking personal data in what members of external pools receive.

Pure and deterministic: no database, no randomness, no locale; the same input always gives the
same output. Each kind of personal data becomes one fixed placeholder:

    [URL]    http(s)/www URLs with a personal path (/users/<x>, /u/<x>, /~name, /@name,
             /profile/…, /people/…, /members/…, /account/…) or a query string carrying a personal
             parameter (email, mail, name, first_name, last_name, user, username, uid, user_id, id,
             phone, …). Other URLs stay, but emails and IP addresses inside them are masked.
    [EMAIL]  addresses like jane.doe@example.org
    [IP]     IPv4 (each octet 0-255, not part of a longer dotted number) and IPv6 (checked with
             the standard `ipaddress` module, so times like 12:30:45 are not addresses)
    [CARD]   13-19 digits, run together or in the printed groups (4-4-4-4, 4-4-4-4-1..3,
             4-6-5), that pass the Luhn check
    [PHONE]  7-15 digits written as a phone number: "+" or "00" prefix, an area code in
             parentheses, or digits grouped by spaces, dashes or dots. Not phones: dates
             (2024-03-15, 15.03.2024, 03/15/2024), version numbers (dots only, unless shaped
             3.3.4), thousands groupings (1 234 567), amounts next to a currency sign or code
             ($ 1 299 999, 1 299 999 EUR), and numbers with more than 15 digits (so a
             Luhn-invalid 16-digit number is neither a card nor a phone).
    [NAME]   names found by fixed rules only: 1-3 capitalised words after an honorific (Mr, Mrs,
             Ms, Miss, Mx, Dr, Prof, Sir, Madam, Mme, Herr, Frau; the honorific is kept), after
             "my name is" / "name's" / "call me" / "I am called" / "this is … speaking", and the
             name on a signature line (after "Regards," "Best," "Thanks," "Cheers," "Sincerely,"
             and similar sign-offs, on the same line or the next one, or after "-- ").

Detectors run in that order (URLs first, so a URL's parts are not half-masked by later rules).

Keeping offsets: for task types whose answers point into the text by character offsets
(TaskType.text_offsets: spans), masking must not move any character. With `keep_offsets`, each
masked piece keeps its length (in characters, i.e. code points): the placeholder followed by "•"
up to the original length ("jane@example.org" -> "[EMAIL]•••••••••"), or only "•" when the
placeholder is longer than the piece ("::1" -> "•••"). Everything outside the masked pieces
stays exactly where it was, so a span's start and end mean the same on the masked and the
original text.

Which fields: every string anywhere in an item's data (nested lists and objects included) goes
through the full detector for external workers, whether or not the project marks its field as
sensitive (defence in depth: personal data turns up in fields nobody thought of). Numbers are
checked as their decimal text (a card number stored as an integer is still a card). Fields the
owner lists in `Project.sensitive_fields` get a stricter pass on top: any run of two or more
capitalised words is taken for a name ([NAME]) and any remaining run of 6 or more digits for an
identifier ([NUMBER]). Those rules would mangle ordinary prose ("New York"), so they apply only
where the owner asked for them.

Who: crowd.selectors.masking_for_worker (one query) gives a Masking for a member of an external
pool of the project and None (the originals) for everyone else; its `keep_offsets` is the
project's task type's `text_offsets`. Callers mask through `Masking.apply` (or `items_mask`), so
the choice travels with the masking. This module imports no Django.

Deliberate limits: names without one of the cues above, obfuscated addresses ("jane at example
dot com") and personal data inside images are not detected; owners who expect such data should
not send that project to external pools.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
IP = "[IP]"
URL = "[URL]"
NAME = "[NAME]"
NUMBER = "[NUMBER]"
FILL = "•"  # pads a placeholder to the masked piece's length when offsets must be kept

# Latin letters incl. Latin-1 and Latin Extended-A (Ā-ſ mixes cases; both sides take it).
_UPPER = "A-ZÀ-ÖØ-ÞĀ-ſ"
_LOWER = "a-zß-öø-ÿĀ-ſ"
_WORD = (
    rf"(?:[{_UPPER}]['’])?[{_UPPER}][{_LOWER}]+(?:[{_UPPER}][{_LOWER}]+)?"  # O'Brien, McAdams
    rf"(?:-[{_UPPER}]?[{_LOWER}]+)*"  # Jean-Luc
)
_NAME_WORDS = rf"{_WORD}(?:[ \t]+{_WORD}){{0,2}}"

_URL_RE = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""
_PERSONAL_PATH_RE = re.compile(
    r"/(?:~[^/]+|@[^/]+|(?:users?|u|profiles?|people|persons?|members?|accounts?|"
    r"customers?|employees?|staff|author|me)(?:/|$))",
    re.IGNORECASE,
)
_PERSONAL_PARAMS = frozenset(
    {
        *("email", "e-mail", "e_mail", "mail", "phone", "tel", "mobile"),
        *("name", "fullname", "full_name", "first_name", "firstname", "last_name", "lastname"),
        *("surname", "user", "username", "user_name", "login", "uid", "userid", "user_id", "id"),
        *("customer", "customer_id", "account", "account_id"),
    }
)
_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = re.compile(rf"(?<![\w.])(?<!v)(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
_IPV6_CANDIDATE_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,8}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"
)
_CARD_RE = re.compile(
    r"(?<![\w.,-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{4,5})"
    r"(?![\w]|[.,]\d)"
)
_PHONE_RE = re.compile(
    r"(?<![\w.,/+-])(?:\+|00)?(?:\(\d{1,5}\)[ .-]?)?\d+(?:[ .-]\(?\d+\)?)*(?![\w]|[.,/]\d)"
)
_DATE_RE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_THOUSANDS_RE = re.compile(r"^\d{1,3}(?:[ ,]\d{3})+$")
_NANP_DOTS_RE = re.compile(r"^\d{3}\.\d{3}\.\d{4}$")
_CURRENCY_BEFORE_RE = re.compile(r"(?:[$€£¥₹]|\b(?:USD|EUR|GBP|CHF|JPY|CAD|AUD))\s*$")
_CURRENCY_AFTER_RE = re.compile(
    r"^\s*(?:[$€£¥₹]|(?:USD|EUR|GBP|CHF|JPY|CAD|AUD|dollars?|euros?)\b)"
)

_HONORIFIC_RE = re.compile(
    rf"\b((?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Herr|Frau)\.?[ \t]+)({_NAME_WORDS})"
)
_INTRO_RE = re.compile(
    rf"\b((?i:my[ \t]+name[ \t]+is|name's|call[ \t]+me|i[ \t]+am[ \t]+called)[ \t]+)"
    rf"({_NAME_WORDS})"
)
_SPEAKING_RE = re.compile(rf"\b((?i:this[ \t]+is)[ \t]+)({_NAME_WORDS})(?=[ \t]+(?i:speaking)\b)")
_SIGNOFF = (
    r"(?i:regards|best[ \t]+regards|kind[ \t]+regards|warm[ \t]+regards|best[ \t]+wishes|best|"
    r"thanks|thank[ \t]+you|many[ \t]+thanks|cheers|sincerely|yours[ \t]+sincerely|"
    r"yours[ \t]+truly|yours|respectfully|love)"
)
_SIGNATURE_RE = re.compile(
    rf"(?m)^([ \t]*{_SIGNOFF}[ \t]*,?[ \t]*(?:\r?\n[ \t]*)?"
    rf"|^[ \t]*(?:--|—|–)[ \t]*(?:\r?\n[ \t]*)?)"
    rf"({_NAME_WORDS})[ \t]*\.?[ \t]*$"
)
_STRICT_NAME_RE = re.compile(rf"\b{_WORD}(?:[ \t]+{_WORD})+\b")
_STRICT_NUMBER_RE = re.compile(r"\d(?:[ .-]?\d){5,}")


@dataclass(frozen=True)
class Masking:
    """What to mask for one worker on one project: everything, plus the strict fields.

    `keep_offsets` (the project's type has text_offsets) makes every mask length-preserving.
    """

    sensitive_fields: frozenset[str] = frozenset()
    keep_offsets: bool = False

    def apply(self, data: Any) -> Any:
        """A masked copy of an item's data under this masking."""
        return data_mask(
            data, sensitive_fields=self.sensitive_fields, keep_offsets=self.keep_offsets
        )


def _cover(placeholder: str, original: str, keep_offsets: bool) -> str:
    """What replaces `original`: the placeholder, or with `keep_offsets` a same-length stand-in."""
    if not keep_offsets:
        return placeholder
    if len(placeholder) <= len(original):
        return placeholder + FILL * (len(original) - len(placeholder))
    return FILL * len(original)


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum used by payment cards."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return bool(digits) and total % 10 == 0


def url_is_personal(url: str) -> bool:
    """True when a URL's path or query points at a person (see the module docstring)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if _PERSONAL_PATH_RE.search(parts.path):
        return True
    keys = {key.lower() for key, _value in parse_qsl(parts.query, keep_blank_values=True)}
    return bool(keys & _PERSONAL_PARAMS)


def _url_mask(match: re.Match[str], keep: bool) -> str:
    url = match.group(0)
    trailing = ""
    while url and url[-1] in _URL_TRAILING:
        url, trailing = url[:-1], url[-1] + trailing
    if url_is_personal(url):
        return _cover(URL, url, keep) + trailing
    return _ip_mask(_email_mask(url, keep), keep) + trailing


def _email_mask(text: str, keep: bool) -> str:
    return _EMAIL_RE.sub(lambda match: _cover(EMAIL, match.group(0), keep), text)


def _ipv6_mask(match: re.Match[str], keep: bool) -> str:
    candidate = match.group(0).rstrip(".:") if match.group(0) != "::" else "::"
    rest = match.group(0)[len(candidate) :]
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return match.group(0)
    return _cover(IP, candidate, keep) + rest


def _ip_mask(text: str, keep: bool) -> str:
    text = _IPV6_CANDIDATE_RE.sub(lambda match: _ipv6_mask(match, keep), text)
    return _IPV4_RE.sub(lambda match: _cover(IP, match.group(0), keep), text)


def _card_mask(match: re.Match[str], keep: bool) -> str:
    candidate = match.group(0)
    if luhn_valid(re.sub(r"\D", "", candidate)):
        return _cover(CARD, candidate, keep)
    # "4111 1111 1111 1111 12/27": the expiry month was read as a fifth group.
    head, sep, tail = candidate.rpartition(" ") if " " in candidate else candidate.rpartition("-")
    digits = re.sub(r"\D", "", head)
    if sep and len(digits) >= 13 and luhn_valid(digits):
        return _cover(CARD, head, keep) + sep + tail
    return candidate


def _is_phone(candidate: str, before: str, after: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15:
        return False
    if _CURRENCY_BEFORE_RE.search(before) or _CURRENCY_AFTER_RE.search(after):
        return False
    if _DATE_RE.match(candidate) or _THOUSANDS_RE.match(candidate):
        return False
    international = candidate.startswith(("+", "00"))
    separators = set(re.sub(r"[\d()+]", "", candidate))
    if separators == {"."} and not international:
        return bool(_NANP_DOTS_RE.match(candidate))  # 555.123.4567, not 10.0.19041.1
    return international or "(" in candidate or bool(separators) or len(digits) >= 10


def _phone_mask(text: str, keep: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        before, after = text[max(match.start() - 6, 0) : match.start()], text[match.end() :]
        if _is_phone(match.group(0), before, after[:10]):
            return _cover(PHONE, match.group(0), keep)
        return match.group(0)

    return _PHONE_RE.sub(replace, text)


def _names_mask(text: str, keep: bool) -> str:
    def keep_cue(match: re.Match[str]) -> str:
        # A signature's trailing "." and spaces are part of the match: dropped, unless kept.
        tail = match.group(0)[match.end(2) - match.start() :] if keep else ""
        return match.group(1) + _cover(NAME, match.group(2), keep) + tail

    text = _HONORIFIC_RE.sub(keep_cue, text)
    text = _SPEAKING_RE.sub(keep_cue, text)
    text = _INTRO_RE.sub(keep_cue, text)
    return _SIGNATURE_RE.sub(keep_cue, text)


def text_mask(text: str, *, strict: bool = False, keep_offsets: bool = False) -> str:
    """`text` with every piece of personal data the detector finds replaced by its placeholder.

    `strict` adds the rules for fields the owner marked sensitive (capitalised word runs are
    names, remaining runs of 6+ digits are identifiers). `keep_offsets` makes every replacement
    as long as what it replaces, so the result has the same length and character positions.
    """
    keep = keep_offsets
    text = _URL_RE.sub(lambda match: _url_mask(match, keep), text)
    text = _email_mask(text, keep)
    text = _ip_mask(text, keep)
    text = _CARD_RE.sub(lambda match: _card_mask(match, keep), text)
    text = _phone_mask(text, keep)
    text = _names_mask(text, keep)
    if strict:
        text = _STRICT_NAME_RE.sub(lambda match: _cover(NAME, match.group(0), keep), text)
        text = _STRICT_NUMBER_RE.sub(lambda match: _cover(NUMBER, match.group(0), keep), text)
    return text


def _value_mask(value: Any, *, strict: bool, keep: bool) -> Any:
    if isinstance(value, str):
        return text_mask(value, strict=strict, keep_offsets=keep)
    if isinstance(value, Mapping):
        return {key: _value_mask(inner, strict=strict, keep=keep) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_value_mask(inner, strict=strict, keep=keep) for inner in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        masked = text_mask(str(value), strict=strict, keep_offsets=keep)
        return value if masked == str(value) else masked
    return value


def data_mask(
    data: Any, *, sensitive_fields: Collection[str] = (), keep_offsets: bool = False
) -> Any:
    """A masked copy of an item's data; top-level keys in `sensitive_fields` get strict rules.

    `keep_offsets` (task types with text_offsets) makes every string keep its length and the
    position of every unmasked character.
    """
    if not isinstance(data, Mapping):
        return _value_mask(data, strict=False, keep=keep_offsets)
    return {
        key: _value_mask(value, strict=key in sensitive_fields, keep=keep_offsets)
        for key, value in data.items()
    }


def items_mask(items: Iterable[Any], *, masking: Masking | None) -> None:
    """Replace `item.data` on in-memory items with its masked copy (never saved); no-op for None.

    For views that render model instances: call it after every service that might save the
    items, right before rendering.
    """
    if masking is None:
        return
    for item in items:
        item.data = masking.apply(item.data)
