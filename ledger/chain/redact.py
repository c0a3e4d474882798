"""Secrets out of text: node URLs carry keys (hosted JSON-RPC providers put them in the URL).

``redact`` is a pure function over any text an exception or a log line may hold. In every URL
(``scheme://...``) it hides the userinfo, every query value, the fragment and each long
token-like path segment (``/v3/<32-hex key>``, ``/<long token>``); in the bare paths that
urllib3 and requests quote (``... with url: /v3/<key>?apikey=...``) it hides the same path
tokens and query values. Hosts, ports and short segments (``/v3``, ``/eth``) stay readable.

``RedactSecrets`` is the same as a logging filter; ``install_log_redaction`` runs it on every
log record the process creates (``serve`` and ``up`` install it).

Example:
    >>> redact("404 for url: https://u:p@x.infura.io/v3/0123456789abcdef0123456789abcdef?k=1")
    '404 for url: https://***@x.infura.io/v3/***?k=***'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping

MASK = "***"

# A URL with a scheme, up to whitespace, a quote or a closing bracket.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# A bare path that an HTTP library quotes after "url: " / "url=" (no scheme, no host).
_QUOTED_PATH = re.compile(r"(?<=\burl: )/[^\s'\"<>()\[\]{}]*|(?<=\burl=)/[^\s'\"<>()\[\]{}]*")
# A path segment that looks like a key: long, and only the characters keys are made of (file
# names, which have a dot, are left alone).
_TOKEN = re.compile(r"[A-Za-z0-9_~-]{16,}")


def redact(text: str) -> str:
    """``text`` with the secrets of every URL in it replaced by ``***``.

    Args:
        text: any text: an exception message, a log line, a problem's detail.

    Returns:
        The text with userinfo, query values, fragments and long path tokens of URLs masked.
    """
    if "/" not in text and "@" not in text and "?" not in text:
        return text  # nothing URL-like: the common case, kept cheap for the log filter
    text = _URL.sub(lambda m: _trailing(m.group(0), _url), text)
    return _QUOTED_PATH.sub(lambda m: _trailing(m.group(0), _path_and_query), text)


def _trailing(found: str, mask: Callable[[str], str]) -> str:
    """Masks ``found`` without the punctuation that ends the sentence around it."""
    kept = found.rstrip(".,:;!")
    return mask(kept) + found[len(kept) :]


def _url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    # The userinfo ends at the last "@" before the query: a password with an unescaped "/" in
    # it would otherwise pass for a path.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    userinfo = at >= 0
    rest = rest[at + 1 :]
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    host, tail = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    return f"{scheme}://{MASK + '@' if userinfo else ''}{host}{_path_and_query(tail)}"


def _path_and_query(tail: str) -> str:
    tail, hash_, _fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    path = "/".join(MASK if _is_token(segment) else segment for segment in path.split("/"))
    if question:
        parts = (p.partition("=") for p in query.split("&"))
        query = "&".join(
            f"{key}={MASK}" if eq else (MASK if key else key) for key, eq, _value in parts
        )
    return path + question + query + (f"{hash_}{MASK}" if hash_ else "")


def _is_token(segment: str) -> bool:
    return _TOKEN.fullmatch(segment) is not None


class RedactSecrets(logging.Filter):
    """Masks URL secrets in a record's message, its arguments, its traceback and its stack.

    The arguments stay arguments (formatters such as uvicorn's access log read them one by
    one): text ones are masked, numbers kept, and any other object (an exception, say) is
    replaced by its masked text. The traceback is rendered to ``exc_text`` here, so no handler
    or formatter downstream sees the unmasked exception.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        else:
            record.msg = redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _masked(arg) for key, arg in record.args.items()}
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            # The traceback is kept as text only: a handler rendering exc_info itself (rich)
            # would print the unmasked exception message again.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _masked(arg: object) -> object:
    if arg is None or isinstance(arg, bool | int | float):
        return arg
    return redact(arg if isinstance(arg, str) else str(arg))


def install_log_redaction() -> Callable[[], None]:
    """Runs ``RedactSecrets`` on every log record made from now on, by any logger.

    A filter on the handlers would miss the handlers configured later (uvicorn replaces its
    own when it starts), so the filter wraps the record factory instead.

    Returns:
        A function that restores the previous record factory.
    """
    previous = logging.getLogRecordFactory()
    secrets = RedactSecrets()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        secrets.filter(record)
        return record

    logging.setLogRecordFactory(factory)

    def uninstall() -> None:
        logging.setLogRecordFactory(previous)

    return uninstall
